"""The whole benchmark: each preset's five phases in one process, then JSON + Markdown.

    result = run_benchmark(["small"], out_dir="benchmark_out")

Phases, one after another on the same grid: (1) gradlab's sweep engine, (2) the
sequential JAX loop, (3) the PyTorch loop, (4) the matmul peak, (5) the engine with
per-layer probes off. Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from experiments.benchmark import report
from experiments.benchmark.flops import matmul_peak, mlp_dims, sweep_flops
from experiments.benchmark.jax_loop import group_points, time_sequential
from experiments.benchmark.phases import time_engine
from experiments.benchmark.presets import get_preset, grid_text, preset_config
from experiments.benchmark.timing import LoopTiming, best_of
from experiments.benchmark.torch_loop import import_torch, time_torch
from gradlab.data import load_dataset

JSON_FILE = "benchmark.json"
MD_FILE = "benchmark.md"


def _describe(t: LoopTiming) -> str:
  return (f"{t.name}: compile {t.compile_s:.1f}s, run {t.run_s:.1f}s, wall {t.wall_s:.1f}s, "
          f"{t.steps_per_s:,.0f} run-steps/s ({t.note})")


def warm_up() -> None:
  """Starts the runtime (thread pools, first dispatch) before anything is timed."""
  import jax
  import jax.numpy as jnp

  x = jnp.ones((256, 256), jnp.float32)
  jax.jit(lambda a: jnp.tanh(a @ a).sum())(x).block_until_ready()


def torch_phase(cfg: Any, dataset: Any, dims: Sequence[tuple[int, int]], threads: int,
                budget_s: float, flush_denormal: bool = True
                ) -> tuple[LoopTiming | None, str]:
  """The PyTorch loop over the grid of `cfg`, or (None, why) when torch is missing."""
  torch = import_torch()
  if torch is None:
    return None, "torch is not installed (pip install torch to add this loop)"
  groups = group_points(cfg)
  if len(groups) != 1:
    return None, "the PyTorch loop trains the one-optimizer MLP presets only"
  _, points, seeds = groups[0]
  timing = time_torch(torch, points, seeds, dataset, dims, int(cfg.data.batch_size),
                      int(cfg.train.steps), int(cfg.train.eval_size), threads, budget_s,
                      flush_denormal)
  return timing, timing.note


def run_preset(name: str, out_dir: str, points: int | None = None, data_dir: str = "",
               torch_threads: int = 2, loop_budget_s: float = 120.0,
               matmul_sizes: Sequence[int] = (1024, 2048, 4096), matmul_repeats: int = 5,
               chunk_size: int = 0, keep_sweeps: bool = False, torch_flush_denormal: bool = True,
               repeats: int = 1, fuse: bool = False, log: Callable[[str], None] = print
               ) -> dict[str, Any]:
  """Runs the five phases of preset `name`; returns its JSON section.

  With `repeats` > 1 each timed loop runs that many times and the fastest is kept;
  `fuse` sets ``sweep.fuse_optimizers`` for gradlab's phases.
  """
  import jax

  preset = get_preset(name)
  n_points = points or preset.points
  cfg_on = preset_config(preset, n_points, True, chunk_size, data_dir)
  cfg_off = preset_config(preset, n_points, False, chunk_size, data_dir)
  cfg_on.sweep.fuse_optimizers = cfg_off.sweep.fuse_optimizers = fuse
  load = {"start": list(os.getloadavg())}
  # Load (and on first use, generate) the dataset before any timing.
  dataset = load_dataset(cfg_on.data.name, data_dir or None)
  input_dim = int(dataset.x_train[0].size)
  dims = mlp_dims(input_dim, preset.width, preset.depth, dataset.num_classes)
  log(f"[{name}] {n_points} points x {preset.steps} steps on {jax.devices()[0].device_kind}")

  first = lambda r: r[0]
  gradlab, written = best_of(
    repeats, lambda: time_engine(cfg_on, out_dir, f"{name}-probes_on", keep_sweeps), first)
  log(f"[{name}] 1. {_describe(gradlab)}")
  seq = best_of(repeats, lambda: time_sequential(cfg_on, dataset, loop_budget_s))
  log(f"[{name}] 2. {_describe(seq)}")
  torch_timing, torch_note = best_of(
    repeats if import_torch() else 1,
    lambda: torch_phase(cfg_on, dataset, dims, torch_threads, loop_budget_s,
                        torch_flush_denormal), first)
  log(f"[{name}] 3. " + (_describe(torch_timing) if torch_timing
                         else f"PyTorch loop skipped: {torch_note}"))
  peak = matmul_peak(matmul_sizes, matmul_repeats)
  flops = sweep_flops(dims, preset.batch_size, preset.steps, n_points)
  log(f"[{name}] 4. matmul peak {peak.best_gflops:.1f} GFLOP/s (n={peak.best_size}); "
      f"gradlab {flops / gradlab.run_s / 1e9:.1f} GFLOP/s while running")
  probes_off, _ = best_of(
    repeats, lambda: time_engine(cfg_off, out_dir, f"{name}-probes_off", keep_sweeps), first)
  log(f"[{name}] 5. {_describe(probes_off)}")
  load["end"] = list(os.getloadavg())
  return report.preset_section(preset, n_points, grid_text(preset, n_points),
                               jax.default_backend(),
                               gradlab, written, seq, torch_timing, torch_note, peak, flops,
                               probes_off, load)


def run_benchmark(presets: Sequence[str], out_dir: str = "benchmark_out",
                  points: int | None = None, log: Callable[[str], None] = print,
                  **kwargs: Any) -> dict[str, Any]:
  """Runs `presets` in order; writes OUT/benchmark.json and OUT/benchmark.md after each.

  Keyword arguments go to `run_preset`. Returns the JSON object: {'meta': ...,
  'presets': {name: section}}.
  """
  for name in presets:
    get_preset(name)  # fail on a bad name before any work
  os.makedirs(out_dir, exist_ok=True)
  result: dict[str, Any] = {"meta": report.meta(), "presets": {}}
  warm_up()
  for name in presets:
    result["presets"][name] = run_preset(name, out_dir, points, log=log, **kwargs)
    with open(os.path.join(out_dir, JSON_FILE), "w") as f:
      json.dump(result, f, indent=2)
    with open(os.path.join(out_dir, MD_FILE), "w") as f:
      f.write(report.markdown(result))
  return result
