"""The coordinate check: does a layer's activation scale stay put as the width grows?

Yang et al. 2022 ("Tensor Programs V: Tuning Large Neural Networks via Zero-Shot
Hyperparameter Transfer", Sec. 6 and App. D.1; the `mup` package's ``get_coord_data``):
train a model for a few steps at several widths and record, at every step t and for
every layer l, the size of the layer's output on a fixed batch. Under a parameterization
with a width limit (muP) every curve of size against width is flat; under the standard
parameterization with one global learning rate, the readout's logits (and, with Adam,
the hidden pre-activations) grow with width after the first steps.

    table = coord_check(cfg, dataset, widths=(64, 256, 1024), parameterizations=("standard",
                        "mup"), steps=10, seeds=(0, 1, 2))
    summary = summarize(table)               # per layer: ratio, spread, log-log slope

Per (parameterization, width, seed, step, layer) `table` holds

- ``rms``: sqrt(mean(h_t ** 2)) over the fixed batch and the layer's units, h_t the
  layer's output after t optimizer steps (t = 0 is the init);
- ``delta_rms``: sqrt(mean((h_t - h_0) ** 2)), how much training moved it.

A layer is a top-level module named in the model's ``layer_names`` (MLP: ``dense_i``,
whose output is the pre-activation, and ``readout``, the logits; Transformer: ``embed``,
``block_i``, ``head``), captured with flax's ``capture_intermediates``. The fixed batch
is the first `probe_size` training examples. Training is gradlab's own: each (width,
parameterization) is one validated group (`gradlab.sweep.grid.make_plan`), its `Static`
from `gradlab.step.make_static`, its start from `gradlab.train.start` and its steps
`gradlab.step.train_step`, so step t is the params that run() holds after t steps, for
key ``PRNGKey(seed)``. The seeds of a group are lanes of one ``jit(vmap(...))``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pandas as pd

from gradlab import step as step_lib
from gradlab import train as train_lib
from gradlab.compile_options import run_options
from gradlab.config import copy_config, make_axes
from gradlab.registry import ConfigError
from gradlab.sweep.grid import make_plan

QUANTITIES = ("rms", "delta_rms")  # what the table records per layer
COLUMNS = ("parameterization", "width", "seed", "step", "layer", "depth", *QUANTITIES)
MAX_SPREAD = 2.0  # the check's pass: max / min over widths of a layer's size at most this
PROBE_SIZE = 256  # examples in the fixed batch


class Cell(NamedTuple):
  """One (parameterization, width) of a check: its resolved config and static parts."""

  parameterization: str
  width: int
  cfg: mlc.ConfigDict
  static: step_lib.Static


def check_config(cfg: mlc.ConfigDict, widths: Sequence[int], parameterizations: Sequence[str],
                 steps: int, seeds: Sequence[int] = (0,)) -> list[mlc.ConfigDict]:
  """The config of every (parameterization, width), in that order, validated like a
  sweep's points (one ConfigError naming the bad key or value, before any compile).

  The config's own sweep axes are dropped; ``train.steps`` is `steps`; the per-step
  probes and the sharpness are off (the check reads only the parameters)."""
  if len(widths) < 2 or len(set(widths)) < 2:
    raise ConfigError(f"a coordinate check needs at least 2 different widths, got "
                      f"{list(widths)}")
  for w in widths:
    if not _whole(w) or w < 1:
      raise ConfigError(f"widths must be positive whole numbers, got {w!r}")
  if not parameterizations:
    raise ConfigError("a coordinate check needs at least one parameterization")
  if not _whole(steps) or steps < 1:
    raise ConfigError(f"a coordinate check needs steps >= 1, got {steps!r}")
  if not seeds or not all(_whole(s) and s >= 0 for s in seeds):
    raise ConfigError(f"a coordinate check needs one or more seeds, each a whole number "
                      f">= 0, got {list(seeds)}")
  c = copy_config(cfg)
  c.train.steps, c.train.log_every, c.train.layer_probes = int(steps), 1, False
  c.diagnostics.every, c.diagnostics.initial = 0, "off"
  c.sweep.replicas, c.sweep.fuse_optimizers = 1, False
  c.sweep.axes = make_axes({"model.parameterization": [str(p) for p in parameterizations],
                            "model.width": sorted({int(w) for w in widths})})
  return [g.cfg for g in make_plan(c).groups]


def _whole(value: Any) -> bool:
  return isinstance(value, int | np.integer) and not isinstance(value, bool)


def make_cells(configs: Sequence[mlc.ConfigDict], num_classes: int, task: Any) -> list[Cell]:
  """The `Static` of each config (a ConfigError where the model has no layer kinds for a
  parameterization other than standard), built before anything compiles."""
  return [Cell(str(c.model.parameterization), int(c.model.width), c,
               step_lib.make_static(c, num_classes, None, task)) for c in configs]


def _keep_layer(names: frozenset[str], module: Any, method: str) -> bool:
  """capture_intermediates filter: the __call__ of a top-level module named in `names`."""
  return method == "__call__" and len(module.scope.path) == 1 and module.name in names


def layer_outputs(static: step_lib.Static, names: tuple[str, ...], params: Any,
                  state: dict[str, Any], x: jax.Array) -> tuple[Any, ...]:
  """The output of each layer in `names` on batch `x` (training mode, float32; a module
  returning a tuple, such as the Transformer's Embed, gives its first element)."""
  mutable = ["intermediates", *state]
  _, captured = static.spec.module.apply(
    {"params": params, **state}, x, train=True, mutable=mutable,
    capture_intermediates=functools.partial(_keep_layer, frozenset(names)))
  found = captured["intermediates"]
  missing = [n for n in names if "__call__" not in found.get(n, {})]
  if missing:
    raise ConfigError(f"the coordinate check reads each layer's output from the top-level "
                      f"module of that name, and this model has none for "
                      f"{', '.join(missing)}")
  outputs = []
  for name in names:
    out = found[name]["__call__"][0]
    outputs.append(out[0] if isinstance(out, tuple) else out)
  return tuple(outputs)


def rms(tree: Any) -> jax.Array:
  """sqrt(mean(x ** 2)) over every element of every leaf of `tree`."""
  leaves = [jnp.asarray(a, jnp.float32) for a in jax.tree.leaves(tree)]
  total = sum(jnp.sum(a * a) for a in leaves)
  return jnp.sqrt(total / sum(a.size for a in leaves))


def _sizes(outputs: tuple[Any, ...], start: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
  """(rms per layer, rms of the change since `start` per layer), each (n_layers,)."""
  moved = jax.tree.map(jnp.subtract, outputs, start)
  return (jnp.stack([rms(o) for o in outputs]), jnp.stack([rms(d) for d in moved]))


def _step_and_measure(static: step_lib.Static, lane: step_lib.Lane, names: tuple[str, ...],
                      x: jax.Array, start: tuple[Any, ...], carry: step_lib.Carry,
                      step: jax.Array) -> tuple[step_lib.Carry, tuple[jax.Array, jax.Array]]:
  """One training step (`gradlab.step.train_step`), then the layers' sizes after it."""
  carry, _ = step_lib.train_step(static, lane, carry, step, probe=False)
  return carry, _sizes(layer_outputs(static, names, carry.params, carry.state, x), start)


def trajectory(static: step_lib.Static, names: tuple[str, ...], steps: int, probe_size: int,
               hp: Mapping[str, jax.Array], key: jax.Array, data: train_lib.DataArrays
               ) -> tuple[jax.Array, jax.Array]:
  """One seed's run: (rms, delta_rms), each (steps + 1, n_layers), row t after t steps."""
  lane = step_lib.make_lane(static, hp, key, data)
  carry, _ = train_lib.start(static, lane)
  x = data.x_eval[:probe_size]
  start = layer_outputs(static, names, carry.params, carry.state, x)
  first = _sizes(start, start)
  _, (sizes, moved) = jax.lax.scan(
    functools.partial(_step_and_measure, static, lane, names, x, start), carry,
    jnp.arange(steps))
  return (jnp.concatenate([first[0][None], sizes]), jnp.concatenate([first[1][None], moved]))


def run_cell(cell: Cell, dataset: Any, seeds: Sequence[int], probe_size: int = PROBE_SIZE
             ) -> pd.DataFrame:
  """The rows (`COLUMNS`) of one (parameterization, width): its seeds as lanes of one
  compiled program."""
  names = tuple(cell.static.layer_names)
  steps = int(cell.cfg.train.steps)
  data = train_lib.make_data_arrays(dataset, max(int(cell.cfg.train.eval_size), probe_size))
  hp = {k: jnp.asarray(v, jnp.float32)
        for k, v in train_lib.hparams_from_config(cell.cfg).items()}
  keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
  run = jax.jit(jax.vmap(functools.partial(trajectory, cell.static, names, steps, probe_size),
                         in_axes=(None, 0, None)), compiler_options=run_options(cell.cfg))
  sizes, moved = (np.asarray(a) for a in run(hp, keys, data))  # (seeds, steps + 1, layers)
  n_seeds, n_steps, n_layers = sizes.shape
  seed_i, step_i, layer_i = np.meshgrid(np.arange(n_seeds), np.arange(n_steps),
                                        np.arange(n_layers), indexing="ij")
  return pd.DataFrame({
    "parameterization": cell.parameterization, "width": cell.width,
    "seed": np.asarray(seeds, int)[seed_i.ravel()], "step": step_i.ravel(),
    "layer": np.asarray(names, object)[layer_i.ravel()], "depth": layer_i.ravel(),
    "rms": sizes.ravel(), "delta_rms": moved.ravel()}, columns=list(COLUMNS))


def coord_check(cfg: mlc.ConfigDict, dataset: Any, widths: Sequence[int],
                parameterizations: Sequence[str], steps: int, seeds: Sequence[int],
                probe_size: int = PROBE_SIZE) -> pd.DataFrame:
  """The coordinate check of `cfg` (module docstring): one row per (parameterization,
  width, seed, step, layer), columns `COLUMNS`. Every config is validated and every
  `Static` built before the first compile."""
  cells = make_cells(check_config(cfg, widths, parameterizations, steps, seeds),
                     dataset.num_classes, dataset.task)
  return pd.concat([run_cell(c, dataset, seeds, probe_size) for c in cells],
                   ignore_index=True)


def _fit(widths: np.ndarray, values: np.ndarray) -> tuple[float, float, float]:
  """(ratio, spread, slope) of a layer's seed-averaged sizes against width: the largest
  width's over the smallest's, max over min, and the least-squares exponent s of
  size ~ width^s (NaN where a size is 0 or not finite, e.g. every change at step 0)."""
  if not (np.all(np.isfinite(values)) and np.all(values > 0)):
    return float("nan"), float("nan"), float("nan")
  slope = float(np.polyfit(np.log(widths), np.log(values), 1)[0])
  return (float(values[-1] / values[0]), float(values.max() / values.min()), slope)


def seed_means(table: pd.DataFrame) -> pd.DataFrame:
  """`table` averaged over seeds: one row per (parameterization, layer, depth, step,
  width), the `QUANTITIES` their means over seeds (what the figure draws)."""
  return (table.groupby(["parameterization", "layer", "depth", "step", "width"], sort=True)
          [list(QUANTITIES)].mean().reset_index())


def summarize(table: pd.DataFrame, max_spread: float = MAX_SPREAD) -> pd.DataFrame:
  """Per (parameterization, layer, step, quantity), the seed-averaged size against width:
  ``width_min``, ``width_max``, ``first`` and ``last`` (the sizes there), ``ratio``
  (last / first: above 1 the layer grows with width), ``spread`` (max / min over every
  width), ``slope`` (size ~ width^slope, fitted in log-log) and ``passes`` (spread <=
  `max_spread`: the check's target, flat up to a factor 2)."""
  means = seed_means(table)
  rows = []
  for (name, layer, depth, step), g in means.groupby(
      ["parameterization", "layer", "depth", "step"], sort=False):
    g = g.sort_values("width")
    widths = g["width"].to_numpy(float)
    for quantity in QUANTITIES:
      values = g[quantity].to_numpy(float)
      ratio, spread, slope = _fit(widths, values)
      rows.append(dict(parameterization=name, layer=layer, depth=int(depth), step=int(step),
                       quantity=quantity, width_min=int(widths[0]),
                       width_max=int(widths[-1]), first=values[0], last=values[-1],
                       ratio=ratio, spread=spread, slope=slope,
                       passes=bool(spread <= max_spread)))
  order = {n: i for i, n in enumerate(dict.fromkeys(table["parameterization"]))}
  out = pd.DataFrame(rows)
  return (out.assign(_o=out["parameterization"].map(order))
          .sort_values(["_o", "step", "quantity", "depth"]).drop(columns="_o")
          .reset_index(drop=True))


def growth_note(summary: pd.DataFrame, parameterization: str, step: int,
                quantity: str = "rms", max_spread: float = MAX_SPREAD) -> str:
  """Which layers are not flat in width at `step` (spread above `max_spread`), largest
  first: e.g. 'grows: dense_1 x17.9, readout x8.47; uneven: dense_2 (spread x2.5), 64 to
  2048' (x: the largest width's size over the smallest's), or 'flat within x1.33, 64 to
  2048' (the largest spread)."""
  rows = summary[(summary["parameterization"] == parameterization)
                 & (summary["step"] == step) & (summary["quantity"] == quantity)]
  if rows.empty:
    return "no data"
  span = f"{rows['width_min'].iloc[0]} to {rows['width_max'].iloc[0]}"
  bad = rows[~rows["passes"]].sort_values("spread", ascending=False)
  if bad.empty:
    return f"flat within x{rows['spread'].max():.3g}, {span}"
  kinds = (("grows", bad["ratio"] > max_spread), ("shrinks", bad["ratio"] < 1 / max_spread))
  parts = [f"{word}: " + ", ".join(f"{r.layer} x{r.ratio:.3g}" for r in bad[m].itertuples())
           for word, m in kinds if m.any()]
  uneven = bad[(bad["ratio"] <= max_spread) & (bad["ratio"] >= 1 / max_spread)]
  if not uneven.empty:
    parts.append("uneven: " + ", ".join(f"{r.layer} (spread x{r.spread:.3g})"
                                        for r in uneven.itertuples()))
  return "; ".join(parts) + f", {span}"


def verdict(summary: pd.DataFrame, parameterization: str, step: int,
            max_spread: float = MAX_SPREAD) -> str:
  """One sentence on `parameterization` at `step`: does every layer's activation RMS stay
  within `max_spread` across widths (the target), which layers grow, shrink or wander if
  not (`growth_note`), and the same for the change since init."""
  rows = summary[(summary["parameterization"] == parameterization)
                 & (summary["step"] == step) & (summary["quantity"] == "rms")]
  n_fail = int((~rows["passes"]).sum())
  state = (f"passes the x{max_spread:g} target at every layer" if n_fail == 0
           else f"fails the x{max_spread:g} target at {n_fail} of {len(rows)} layers")
  return (f"{parameterization} at step {step}: activation RMS "
          f"{growth_note(summary, parameterization, step, 'rms', max_spread)} ({state}); "
          f"change since init "
          f"{growth_note(summary, parameterization, step, 'delta_rms', max_spread)}.")
