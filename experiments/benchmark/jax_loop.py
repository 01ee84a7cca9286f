"""The sequential JAX loop: a careful user's loop over the grid, one point at a time.

One ``jax.jit(build_run(cfg, ...).run)`` per group of equal static structure (one for
the MLP presets, one per optimizer for `default`) is compiled once and reused for every
point of the group, called with that point's hyperparameters (float32 scalars) and
``PRNGKey(seed)``; each trajectory is fetched to the host before the next point starts.
It computes exactly what one lane of the sweep engine computes (the same `run`, probes
included), but it neither classifies regimes nor writes results.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc

from experiments.benchmark.timing import LoopTiming, peak_rss_mb, subset_note, time_points
from gradlab.sweep import grid
from gradlab.train import build_run, make_data_arrays


def group_points(cfg: mlc.ConfigDict
                 ) -> list[tuple[mlc.ConfigDict, list[dict[str, float]], list[int]]]:
  """(group config, hparams, seeds) of every group of `cfg`'s grid, in plan order."""
  out = []
  for group in grid.make_plan(cfg).groups:
    points = [{k: values[i] for k, values in group.hparams.items()} for i in range(len(group))]
    out.append((group.cfg, points, list(group.seeds)))
  return out


def time_sequential(cfg: mlc.ConfigDict, dataset: Any, budget_s: float = float("inf")
                    ) -> LoopTiming:
  """Times the grid of `cfg` point by point: per group of equal static structure, one
  jitted run compiled once (plain ``jax.jit``, JAX's default compiler options) and
  reused for every point of the group."""
  data = make_data_arrays(dataset, cfg.train.eval_size)
  compile_s, steps = 0.0, int(cfg.train.steps)
  calls: list[Any] = []
  for gcfg, points, seeds in group_points(cfg):
    run = build_run(gcfg, dataset.num_classes, task=dataset.task).run

    def as_args(i: int, points: list[dict[str, float]] = points, seeds: list[int] = seeds
                ) -> tuple[dict[str, jax.Array], jax.Array]:
      hp = {k: jnp.asarray(v, jnp.float32) for k, v in points[i].items()}
      return hp, jax.random.PRNGKey(seeds[i])

    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(*as_args(0), data).compile()
    compile_s += time.perf_counter() - t0
    calls += [(compiled, functools.partial(as_args, i)) for i in range(len(points))]

  def train_point(i: int) -> None:
    compiled, args = calls[i]
    jax.device_get(compiled(*args(), data))

  run_s, timed = time_points(train_point, len(calls), budget_s)
  return LoopTiming("sequential JAX loop", len(calls), timed, steps, compile_s, run_s,
                    peak_rss_mb=peak_rss_mb(), note=subset_note(timed, len(calls)))
