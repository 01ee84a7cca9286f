"""The sweep engine's door: a config and a workdir in, rows on disk and `SweepStats` out.

`MODES` maps ``sweep.mode`` to the function that runs a plan in that mode
(`gradlab.sweep.dense.run_grid`, `gradlab.sweep.boundary.run_boundary`); both hand
chunks to the one `gradlab.sweep.executor.Executor`. `run_sweep` builds the plan once
(`gradlab.sweep.grid.make_plan`: every validation, before any compile) unless the
caller passes the plan it already built, and runs it in the config's mode.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections as mlc
import pandas as pd

from gradlab.sweep import grid
from gradlab.sweep.boundary import run_boundary
from gradlab.sweep.dense import run_grid
from gradlab.sweep.executor import SweepStats

# sweep.mode -> mode(cfg, plan, workdir, progress, on_compile, resume) -> SweepStats
MODES: dict[str, Callable[..., SweepStats]] = {"grid": run_grid, "boundary": run_boundary}


def run_sweep(cfg: mlc.ConfigDict, workdir: str, progress: bool = True,
              on_compile: Callable[[int, float], None] | None = None,
              resume: str = "auto", plan: grid.Plan | None = None,
              on_chunk: Callable[[pd.DataFrame], None] | None = None) -> SweepStats:
  """Runs the grid of `cfg` into `workdir` (or, with ``sweep.mode='boundary'``, the
  boundary search of `gradlab.sweep.boundary`); returns counts and timings.

  `plan`: the plan of `cfg` when the caller already made it (it is not made again).
  `on_chunk(rows)`: called after each chunk this process writes (the live index.html).
  Every process of a multi-process run calls it with the same arguments.
  """
  plan = grid.make_plan(cfg) if plan is None else plan
  return MODES[cfg.sweep.mode](cfg, plan, workdir, progress=progress, on_compile=on_compile,
                               resume=resume, on_chunk=on_chunk)
