"""The sequential JAX loop: a careful user's loop over the grid, one point at a time.

One ``jax.jit(build_run(cfg, ...).run)`` is compiled once and reused for every point, called
with that point's hyperparameters (float32 scalars) and ``PRNGKey(seed)``; each
trajectory is fetched to the host before the next point starts. It computes exactly what
one lane of the sweep engine computes (the same `run`, probes included), but it neither
classifies regimes nor writes results.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc

from experiments.benchmark.timing import LoopTiming, peak_rss_mb, subset_note, time_points
from gradlab.sweep import grid
from gradlab.train import build_run, make_data_arrays


def grid_points(cfg: mlc.ConfigDict) -> tuple[list[dict[str, float]], list[int]]:
  """The (hparams, seed) of every point of `cfg`'s grid, in run_id order.

  The benchmark grids have one static structure, so one group holds every point.
  """
  plan = grid.make_plan(cfg)
  if len(plan.groups) != 1:
    raise ValueError(f"benchmark grids have one group; this one has {len(plan.groups)}")
  group = plan.groups[0]
  points = [{k: values[i] for k, values in group.hparams.items()} for i in range(len(group))]
  return points, list(group.seeds)


def time_sequential(cfg: mlc.ConfigDict, dataset: Any, budget_s: float = float("inf")
                    ) -> LoopTiming:
  """Times the grid of `cfg` point by point through one reused jitted run."""
  points, seeds = grid_points(cfg)
  data = make_data_arrays(dataset, cfg.train.eval_size)
  run = build_run(cfg, dataset.num_classes, task=dataset.task).run

  def as_args(i: int) -> tuple[dict[str, jax.Array], jax.Array]:
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in points[i].items()}
    return hp, jax.random.PRNGKey(seeds[i])

  t0 = time.perf_counter()
  compiled = jax.jit(run).lower(*as_args(0), data).compile()
  compile_s = time.perf_counter() - t0

  def train_point(i: int) -> None:
    hp, key = as_args(i)
    jax.device_get(compiled(hp, key, data))

  run_s, timed = time_points(train_point, len(points), budget_s)
  return LoopTiming("sequential JAX loop", len(points), timed, int(cfg.train.steps),
                    compile_s, run_s, peak_rss_mb=peak_rss_mb(),
                    note=subset_note(timed, len(points)))
