"""Boundary search: where along one axis does training stop being stable?

With ``sweep.mode = 'boundary'``, instead of a dense grid, gradlab brackets, for every
point of the other axes at once, the boundary between *stable* (a label of
`gradlab.regimes.STABLE`) and *unstable* (exploding or diverged) along one traced axis,
``sweep.boundary_axis`` (default the learning rate). The min and max of that axis's
values are the initial bracket; the search is on a log scale when both are positive.

`bisect` is a vectorized bisection: every outer point bisects together for a fixed
number of rounds (``sweep.boundary_rounds``), so each call evaluates all points through
the same compiled function (one compile per group of equal static structure, as in a
dense sweep). Call 0 runs the lower end of the axis, call 1 the upper end, each later
call the midpoints of the brackets.

After r rounds the bracket [lo, hi] of a point is (max/min)^(1/2^r) wide (ratio, log
scale): the resolution of a dense grid of 2^r + 1 values, for 2 + r runs instead of
2^r + 1 (`dense_runs_for_same_resolution`).

Every boundary run is a result row like a dense sweep's (columns `boundary_round`: 0 for
the two ends, k for the k-th bisection round, and `boundary_point`: the index of the
outer point), so a rerun into the same workdir resumes the search where it stopped.
`boundary.csv` holds, per outer point, its axis values and lo, hi, estimate, status;
`boundary.json` the run counts.

With ``sweep.replicas = R`` every evaluation of an outer point is R runs (seeds
train.seed + r, lanes of the same group) and the point counts as stable when the
majority of its replicas is (`replica_majority`: more than R/2 stable; a tie is
unstable). Run ids are then call * (outer points * R) + point * R + r, and the rows
carry a `replica` column beside `boundary_point`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import ml_collections as mlc
import numpy as np
import pandas as pd

from gradlab import config as config_lib
from gradlab import regimes, results
from gradlab.registry import ConfigError
from gradlab.sweep import grid, lock
from gradlab.sweep import mesh as mesh_lib
from gradlab.sweep.begin import Started, progress_bar, start
from gradlab.sweep.deal import make_executor
from gradlab.sweep.executor import SweepStats

log = logging.getLogger("gradlab")

STABLE = regimes.STABLE
BOUNDARY_CSV = "boundary.csv"
BOUNDARY_JSON = "boundary.json"


@dataclass
class Boundary:
  """Per outer point: the last stable value `lo`, the first unstable value `hi`, the
  estimate (geometric or arithmetic midpoint) and a status: 'bracketed', 'all_stable'
  (stable at the axis maximum: estimate = the maximum, a lower bound), 'all_unstable'
  (unstable at its minimum: estimate = the minimum, an upper bound) or 'inverted'
  (unstable at the minimum, stable at the maximum: estimate NaN)."""

  lo: np.ndarray
  hi: np.ndarray
  estimate: np.ndarray
  status: np.ndarray
  n_runs: int


def midpoint(lo: np.ndarray, hi: np.ndarray, log: bool) -> np.ndarray:
  return np.sqrt(lo * hi) if log else 0.5 * (lo + hi)


def bisect(evaluate: Callable[[np.ndarray], np.ndarray], lo: float | np.ndarray,
           hi: float | np.ndarray, n_points: int, rounds: int, log: bool = True) -> Boundary:
  """Vectorized bisection. `evaluate(values)` takes one value per outer point (shape
  (n_points,)) and returns whether each run was stable; it is called 2 + rounds times,
  always with n_points values (points whose bracket is not open rerun their `lo`)."""
  if rounds < 0:
    raise ValueError("rounds must be >= 0")
  lo = np.broadcast_to(np.asarray(lo, np.float64), (n_points,)).copy()
  hi = np.broadcast_to(np.asarray(hi, np.float64), (n_points,)).copy()
  if log and (np.any(lo <= 0) or np.any(hi <= 0)):
    raise ValueError("a log-scale boundary search needs positive axis values")
  stable_lo = np.asarray(evaluate(lo), bool)
  stable_hi = np.asarray(evaluate(hi), bool)
  status = np.where(stable_lo & ~stable_hi, "bracketed",
                    np.where(stable_lo, "all_stable",
                             np.where(stable_hi, "inverted", "all_unstable"))).astype(object)
  active = status == "bracketed"
  for _ in range(rounds):
    mid = midpoint(lo, hi, log)
    stable = np.asarray(evaluate(np.where(active, mid, lo)), bool)
    lo = np.where(active & stable, mid, lo)
    hi = np.where(active & ~stable, mid, hi)
  estimate = np.where(active, midpoint(lo, hi, log),
                      np.where(status == "all_stable", hi, np.where(
                        status == "all_unstable", lo, np.nan)))
  return Boundary(lo, hi, estimate, status, n_runs=n_points * (2 + rounds))


def replica_majority(stable: np.ndarray, replicas: int) -> np.ndarray:
  """Per outer point, whether the majority of its `replicas` runs was stable.

  `stable` holds one flag per run, point-major (point * replicas + r, as the plan numbers
  them); a point is stable when more than half its replicas are, so a tie (R even) counts
  as unstable, as `gradlab.regimes.worst_common_regime` sends ties to the worse label."""
  flags = np.asarray(stable, bool).reshape(-1, int(replicas))
  return 2 * flags.sum(axis=1) > int(replicas)


def dense_runs_for_same_resolution(n_points: int, rounds: int, replicas: int = 1) -> int:
  """Runs a dense grid needs for the bisection's resolution: 2^rounds + 1 per point
  (times its replicas)."""
  return n_points * (2**rounds + 1) * int(replicas)


def resolution(lo: float, hi: float, rounds: int, log: bool) -> float:
  """Bracket width after `rounds` rounds: a ratio hi/lo (log) or a difference."""
  return (hi / lo) ** (1.0 / 2**rounds) if log else (hi - lo) / 2**rounds


def outer_plan(cfg: mlc.ConfigDict) -> grid.Plan:
  """The plan of the other axes: every point of it gets its own boundary."""
  axis = cfg.sweep.boundary_axis
  outer = config_lib.copy_config(cfg)
  outer.sweep.axes = config_lib.make_axes(
    {k: v for k, v in cfg.sweep.axes.items() if k != axis})
  outer.sweep.mode = "grid"
  return grid.make_plan(outer, validate=False)  # the caller's plan of cfg validated it


def _round_group(group: grid.Group, call: int, n_outer: int, axis: str,
                 values: np.ndarray, positions: list[int], replicas: int = 1) -> grid.Group:
  """The runs of call `call` for the outer runs of `group` at `positions`: the axis set
  to `values[outer point]` (outer point = outer run id // replicas), run_id = call *
  n_outer + outer run id (`n_outer`: the outer plan's runs, replicas included)."""
  sub = group.subset(positions)
  short = axis.split(".")[-1]
  outer_ids = list(sub.run_ids)
  points = [i // replicas for i in outer_ids]
  sub.run_ids = [call * n_outer + i for i in outer_ids]
  sub.hparams = {**sub.hparams, short: [float(values[p]) for p in points]}
  if short == "decay_steps":  # 0 means train.steps, as in config.traced_values
    sub.hparams[short] = [v if v > 0 else float(group.cfg.train.steps)
                          for v in sub.hparams[short]]
  if axis == "train.seed":  # the replicas of a point keep their offsets r
    sub.seeds = [int(values[p]) + i % replicas for p, i in zip(points, outer_ids, strict=True)]
    sub.hparams[short] = [float(seed) for seed in sub.seeds]
  sub.axis_values = [{**av, axis: float(values[p])} for av, p in zip(sub.axis_values,
                                                                       points, strict=True)]
  kept = {k: v for k, v in sub.extra.items() if k != axis}  # the axis column is the value
  sub.extra = {**kept, "boundary_round": [max(call - 1, 0)] * len(outer_ids),
               "boundary_point": points}
  return sub


# Keys whose change moves the boundary search's run ids (positions in the search).
_POSITION_KEYS = ("sweep.axes", "sweep.boundary_axis", "sweep.boundary_rounds",
                  "sweep.replicas")


def run_boundary(cfg: mlc.ConfigDict, plan: grid.Plan, workdir: str, progress: bool = True,
                 on_compile: Callable[[int, float], None] | None = None,
                 resume: str = "auto",
                 on_chunk: Callable[[pd.DataFrame], None] | None = None) -> SweepStats:
  """The boundary search of `cfg` into `workdir` (see the module docstring); returns
  `SweepStats` with `.boundary` set. `plan` is `grid.make_plan(cfg)`, whose validation
  covered the config and both ends of the bracket; the runs follow the plan of the other
  axes (`outer_plan`). Every process calls it alike."""
  del plan  # made (and validated) by the caller; the runs are those of the outer plan
  t_start = time.perf_counter()
  outer = outer_plan(cfg)
  n_total = outer.n_points * (2 + int(cfg.sweep.boundary_rounds))  # outer runs per call
  meta = {"axes": list(cfg.sweep.axes), "n_points": n_total, "mode": "boundary",
          "outer_axes": list(outer.axes), "boundary_axis": cfg.sweep.boundary_axis}
  begun = start(cfg, workdir, resume, outer, meta)
  try:
    return _search(cfg, workdir, progress, on_compile, begun, outer, t_start, on_chunk)
  finally:
    lock.release(workdir, jax.process_index())


def _search(cfg: mlc.ConfigDict, workdir: str, progress: bool,
            on_compile: Callable[[int, float], None] | None, begun: Started,
            outer: grid.Plan, t_start: float,
            on_chunk: Callable[[pd.DataFrame], None] | None = None) -> SweepStats:
  """The bisection rounds of `run_boundary` after `start` (the lock is held)."""
  axis = cfg.sweep.boundary_axis
  rounds = int(cfg.sweep.boundary_rounds)
  ends = [float(v) for v in cfg.sweep.axes[axis]]
  lo, hi = min(ends), max(ends)
  log_scale = lo > 0
  replicas = int(cfg.sweep.replicas)
  n_outer = outer.n_points
  n_total = n_outer * (2 + rounds)
  axes = list(cfg.sweep.axes)
  mesh, done, n_corrupt = begun.mesh, begun.done, begun.n_corrupt
  moved = [d for d in begun.differences if d.startswith(_POSITION_KEYS)]
  if moved:
    raise ConfigError(f"a boundary search resumes only with the same axes and rounds "
                      f"(its run ids are positions in the search; changed: {'; '.join(moved)})"
                      f": use a new --workdir")
  codes = np.full(n_total, -1, np.int8)  # -1 unknown, 0 unstable, 1 stable
  ids = done["run_id"].to_numpy(dtype=np.int64)
  keep = (ids >= 0) & (ids < n_total)
  codes[ids[keep]] = np.isin(done["regime"].to_numpy()[keep], STABLE)
  codes = mesh_lib.gather_max(codes)
  n_done = int((codes >= 0).sum())
  stats = SweepStats(n_total, len(outer.groups), 0, n_done, 0.0, 0.0, 0.0,
                            n_corrupt_files=n_corrupt, n_devices=mesh.size,
                            n_processes=jax.process_count())
  bar = progress_bar(n_total, n_done, progress)
  executor = make_executor(cfg, workdir, mesh, stats, axes, bar, on_compile, on_chunk)
  todo_per_group = [sum(int((codes[c * n_outer + np.asarray(g.run_ids)] < 0).sum())
                        for c in range(2 + rounds)) for g in outer.groups]
  log.info("boundary search along %s in [%g, %g] (%s scale), %d rounds, for %d points of "
           "%s: %d runs (%d done already)", axis, lo, hi, "log" if log_scale else "linear",
           rounds, n_outer, ", ".join(outer.axes) or "no other axis", n_total, n_done)
  if sum(todo_per_group):
    stats.estimated_bytes = executor.estimate(outer.groups, todo_per_group)
  call = iter(range(2 + rounds))

  def evaluate(values: np.ndarray) -> np.ndarray:
    c = next(call)
    ids = c * n_outer + np.arange(n_outer)
    new = np.full(n_outer, -1, np.int8)
    for group in outer.groups:
      positions = [p for p, i in enumerate(group.run_ids) if codes[ids[i]] < 0]
      todo = _round_group(group, c, n_outer, axis, values, positions, replicas)
      for rows in executor.run(todo):
        new[rows["run_id"].to_numpy(int) - c * n_outer] = rows["regime"].isin(STABLE).to_numpy()
    codes[ids] = np.maximum(codes[ids], mesh_lib.gather_max(new))
    return replica_majority(codes[ids] == 1, replicas)

  n_points = n_outer // replicas
  with executor.watchdog():
    found = bisect(evaluate, lo, hi, n_points, rounds, log_scale)
  found.n_runs *= replicas
  bar.close()
  if jax.process_index() == 0:
    write_boundary(workdir, outer, found, axis, lo, hi, rounds, log_scale, replicas)
  mesh_lib.barrier("gradlab-boundary-done")
  stats.boundary = found
  stats.wall_seconds = time.perf_counter() - t_start
  log.info("boundary search: %d runs; a dense grid of the same resolution needs %d",
           found.n_runs, dense_runs_for_same_resolution(n_points, rounds, replicas))
  return stats


def write_boundary(workdir: str, outer: grid.Plan, found: Boundary, axis: str, lo: float,
                   hi: float, rounds: int, log_scale: bool, replicas: int = 1) -> None:
  """boundary.csv (one row per outer point) and boundary.json (the run counts)."""
  n_outer = outer.n_points // replicas
  rows: dict[str, Any] = {"boundary_point": np.arange(n_outer),
                          "group": np.zeros(n_outer, int)}
  for key in outer.axes:
    rows[key] = [None] * n_outer
  for group in outer.groups:
    for run_id, values in zip(group.run_ids, group.axis_values, strict=True):
      i = run_id // replicas
      rows["group"][i] = group.index
      for key in outer.axes:
        rows[key][i] = values[key]
  rows.update(lo=found.lo, hi=found.hi, estimate=found.estimate, status=found.status)
  table = pd.DataFrame(rows)
  table.insert(len(table.columns) - 4, "axis", axis)
  path = os.path.join(workdir, BOUNDARY_CSV)
  results.write_csv(path, table)
  results.write_json(os.path.join(workdir, BOUNDARY_JSON), {
    "axis": axis, "bracket": [lo, hi], "log_scale": log_scale, "rounds": rounds,
    "outer_axes": list(outer.axes), "outer_points": n_outer, "replicas": replicas,
    "runs": found.n_runs,
    "dense_runs_for_same_resolution": dense_runs_for_same_resolution(n_outer, rounds,
                                                                     replicas),
    "resolution": resolution(lo, hi, rounds, log_scale),
    "resolution_kind": "ratio hi/lo" if log_scale else "difference hi - lo",
    "status_counts": {str(k): int(v) for k, v in
                      zip(*np.unique(found.status.astype(str), return_counts=True), strict=True)},
  })


def load_boundary(workdir: str) -> pd.DataFrame:
  """boundary.csv of a boundary-search workdir."""
  path = os.path.join(workdir, BOUNDARY_CSV)
  if not os.path.exists(path):
    raise ConfigError(f"'{workdir}' holds no {BOUNDARY_CSV}: not a finished boundary search")
  return pd.read_csv(path)
