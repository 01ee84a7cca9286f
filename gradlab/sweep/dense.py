"""``sweep.mode = 'grid'``: every point of the plan, each run once.

A rerun into the same workdir plans only the points not written yet (by point identity:
`gradlab.sweep.resume`); a workdir of a different config is refused
(`gradlab.sweep.meta.check_resume`) unless the resume is forced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import jax
import ml_collections as mlc
import pandas as pd

from gradlab.sweep import grid, lock
from gradlab.sweep import mesh as mesh_lib
from gradlab.sweep import resume as resume_lib
from gradlab.sweep.begin import progress_bar, start
from gradlab.sweep.deal import make_executor
from gradlab.sweep.executor import SweepStats

log = logging.getLogger("gradlab")


def run_grid(cfg: mlc.ConfigDict, plan: grid.Plan, workdir: str, progress: bool = True,
             on_compile: Callable[[int, float], None] | None = None,
             resume: str = "auto",
             on_chunk: Callable[[pd.DataFrame], None] | None = None) -> SweepStats:
  """Runs every point of `plan` (made from `cfg` by `grid.make_plan`, which validated
  it) not written yet into `workdir`; returns counts and timings. `on_chunk(rows)` runs
  after each chunk this process writes. Every process of a multi-process run calls it
  with the same arguments."""
  t_start = time.perf_counter()
  begun = start(cfg, workdir, resume, plan)
  try:
    mesh = begun.mesh
    todo, n_done = resume_lib.todo(plan, begun.done, begun.saved)
    stats = SweepStats(plan.n_points, len(plan.groups), 0, n_done, 0.0, 0.0, 0.0,
                       n_corrupt_files=begun.n_corrupt, n_devices=mesh.size,
                       n_processes=jax.process_count())
    bar = progress_bar(plan.n_points, stats.n_skipped, progress)
    executor = make_executor(cfg, workdir, mesh, stats, list(plan.axes), bar, on_compile,
                             on_chunk)
    if todo:
      log.info("%d of %d runs to do (%d done already) in %d groups on %d devices (mesh %s)",
               sum(map(len, todo)), plan.n_points, stats.n_skipped, len(todo), mesh.size,
               dict(mesh.shape))
      stats.estimated_bytes = executor.estimate(todo, [len(g) for g in todo])
    with executor.watchdog():
      for group in todo:
        executor.run(group)
    bar.close()
    mesh_lib.barrier("gradlab-sweep-done")
  finally:
    lock.release(workdir, jax.process_index())
  stats.wall_seconds = time.perf_counter() - t_start
  log.info("%d compiles for %d groups (+%d trial compiles)", stats.n_compiles,
           stats.n_groups, stats.n_trial_compiles)
  return stats
