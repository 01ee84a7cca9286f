"""Every family's config keys, assembled: the whole schema, its defaults, and which keys
are traced. Config files, the plan and the entry points start here::

    from gradlab.defaults import base_config
    c = base_config()          # every key gradlab knows, with its default

Importing the model, optimizer, data and loss packages registers each family's own keys
(`gradlab.config.register_keys`, beside its builder); this module adds the sections
that belong to the run rather than to a family, then freezes the result as `SCHEMA`:

- ``train``: steps, log_every, seed (traced), eval_size, layer_probes (per-layer
  gradient norms), remat (recompute each block's activations in the backward pass, so
  more lanes of a deep model fit: `gradlab.models.registry.with_remat`), precision (the
  dtype the model computes in: float32, bfloat16 or float16; `gradlab.precision`); loss,
  z_loss,
  box_loss are the losses' (`gradlab.losses`)
- ``regimes``: the labels' explode_factor, stall_fraction, loss_tolerance, spike_factor,
  baseline_steps (rules and defaults justified in `gradlab.regimes`), and the init-time
  prediction's vanish_gain, explode_gain
- ``diagnostics``: every (sharpness by power iteration every this many steps, a
  multiple of train.log_every; 0 = off), initial (with every = 0, measure the sharpness
  once at step 0: 'on', 'off', or 'auto' = when the init-time prediction reads it, i.e.
  for losses with a catapult window, `gradlab.prediction.CATAPULT_MAX`), power_iters (the power
  iteration's MAXIMUM iterations) and power_tol (it stops when the estimate's relative
  change between iterations is at most this; each measurement records its iterations
  and whether it converged; 0 = always run power_iters, never flagged converged),
  grad_histograms (record per-layer histograms of the gradient entries at every logged
  step, `gradlab.probes.grad_histogram`; experiments.train turns it on for TensorBoard)
- ``sweep``: axes (dotted key -> list of values); chunk_size (lanes per compiled call;
  0 = chosen from memory_budget); memory_budget (bytes per device; 0 = half the device's
  memory); keep_trajectories (False: result rows only); compile_cache ('' =
  <workdir's parent>/.jax_cache, 'none' = off, else a folder); mode ('grid' or
  'boundary'); boundary_axis, boundary_rounds, dense_workdir (see
  `gradlab.sweep.boundary`); replicas (seeds per grid point, run as lanes of the same
  group: seed = train.seed + r for r = 0..replicas-1, result column `replica`; the maps
  and report.md show each cell's majority label and its agreement); chunk_timeout_s (the
  watchdog: seconds without a finished chunk after which the sweep dumps every thread's
  stack and exits with status 3, its rows kept; 0 = automatic, 20 x the slowest chunk
  so far and at least 15 minutes; `gradlab.sweep.watchdog`); cpu_opt_level (LLVM's
  optimization level for the run programs on the CPU, 0-3: 1 compiles about 40% faster
  than XLA's default 3 and trains bit for bit the same; `gradlab.compile_options`);
  fuse_optimizers (groups that differ only in optimizer.name share one compiled program,
  each lane picking its optimizer: `gradlab.optim.fused`); tensorboard (after each chunk's
  rows are written, one TensorBoard HParams session per run in WORKDIR/tensorboard:
  `gradlab.tensorboard.write_sweep_hparams`)
- ``mesh``: data (devices on the mesh's 'data' axis: data parallelism inside one run;
  the rest carry lanes on the 'grid' axis; 1 = all devices on 'grid')

A new family registers its keys in its own module; importing it from its package's
``__init__`` (as every model, optimizer and dataset is) puts them here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections as mlc

from gradlab import config, data, losses, models, optim  # noqa: F401  (each registers its keys)
from gradlab.precision import compute_dtype
from gradlab.registry import ConfigError


def _check_run_lengths(point: Mapping[str, Any]) -> None:
  """diagnostics.every is 0 or a multiple of train.log_every; log_every <= steps;
  train.precision is one of `gradlab.precision.PRECISIONS`."""
  every = point["diagnostics.every"]
  if every < 0 or every % point["train.log_every"]:
    raise ConfigError(f"config key 'diagnostics.every' ({every}) must be 0 or a multiple of "
                      f"'train.log_every' ({point['train.log_every']})")
  if point["train.log_every"] > point["train.steps"]:
    raise ConfigError(
      f"config key 'train.log_every' ({point['train.log_every']}) exceeds "
      f"'train.steps' ({point['train.steps']})"
    )
  compute_dtype(point["train.precision"])  # a ConfigError naming the precisions


config.register_keys(
  "train", dict(steps=300, log_every=10, seed=0, eval_size=1024, layer_probes=True,
                remat=False, precision="float32"),
  family="train", traced=("seed",), positive=("steps", "log_every"),
  non_negative=("eval_size", "seed"), check=_check_run_lengths)
config.register_keys(
  "regimes",
  dict(explode_factor=100.0, stall_fraction=0.05, loss_tolerance=0.01, spike_factor=1.25,
       baseline_steps=50, vanish_gain=1e-2, explode_gain=1e2),
  family="regimes",
  positive=("explode_factor", "spike_factor", "baseline_steps", "vanish_gain", "explode_gain"),
  non_negative=("loss_tolerance",), unit_interval=("stall_fraction",))
INITIAL_SHARPNESS = ("auto", "on", "off")


def _check_diagnostics(point: Mapping[str, Any]) -> None:
  """diagnostics.initial is one of INITIAL_SHARPNESS; grad_histograms is true or false."""
  if point["diagnostics.initial"] not in INITIAL_SHARPNESS:
    raise ConfigError(f"config key 'diagnostics.initial' is '{point['diagnostics.initial']}'"
                      f"; known: {', '.join(INITIAL_SHARPNESS)}")
  if not isinstance(point["diagnostics.grad_histograms"], bool):
    raise ConfigError(f"config key 'diagnostics.grad_histograms' takes true/false, got "
                      f"{point['diagnostics.grad_histograms']!r}")


config.register_keys("diagnostics", dict(every=0, power_iters=100, power_tol=1e-3,
                                         initial="auto", grad_histograms=False),
                     family="diagnostics", positive=("power_iters",),
                     non_negative=("power_tol",), check=_check_diagnostics)
config.register_keys(
  "sweep",
  dict(chunk_size=0, memory_budget=0.0, keep_trajectories=True, compile_cache="",
       mode="grid", boundary_axis="optimizer.learning_rate", boundary_rounds=6,
       dense_workdir="", replicas=1, chunk_timeout_s=0.0, cpu_opt_level=1,
       fuse_optimizers=False, tensorboard=False),
  family="sweep", positive=("replicas",), non_negative=("chunk_timeout_s",))
config.register_keys("mesh", dict(data=1), family="mesh")

# The whole schema: every family's keys, defaults, ranges and checks.
SCHEMA: config.Schema = config.registered_schema()

# Keys that are traced numbers inside run(): sweeping them never recompiles.
TRACED_KEYS: tuple[str, ...] = SCHEMA.traced

# Traced keys whose sign also switches a stage on or off (a static choice).
STAGE_SWITCHES: tuple[str, ...] = SCHEMA.switches


def base_config() -> mlc.ConfigDict:
  """Every key gradlab knows, with its default. Config files start from this."""
  return config.schema_config(SCHEMA)


# Every dotted key of the schema ('sweep.axes', 'quick' and 'quick_overrides' included).
KNOWN_KEYS: tuple[str, ...] = tuple(config.flatten(base_config()))


def apply_quick(cfg: mlc.ConfigDict, user_keys: Sequence[str] = ()) -> mlc.ConfigDict:
  """`gradlab.config.apply_quick` against the whole schema: with ``cfg.quick`` set, `cfg`
  with its quick_overrides applied except the dotted keys in `user_keys`."""
  return config.apply_quick(cfg, KNOWN_KEYS, user_keys)
