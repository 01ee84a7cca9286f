"""What one timed loop reports, peak host memory, and timing a subset of points."""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np


def peak_rss_mb() -> float:
  """Peak resident memory of this process so far, in MiB (``ru_maxrss``)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, else KiB


@dataclasses.dataclass
class LoopTiming:
  """Seconds one way of training the grid took, split into compile and run.

  run_s is for ALL points: where only `points_timed` of `points` were run, it is their
  mean seconds per point times `points` (see `note`). wall_s = compile_s + run_s +
  other_s, where other_s is what the loop does besides compiling and training (planning,
  loading data, writing results). load_avg_1min, taken when the loop ends, shows whether
  other processes shared the cores (this process alone keeps it near its thread count).
  """

  name: str
  points: int
  points_timed: int
  steps: int
  compile_s: float
  run_s: float
  other_s: float = 0.0
  peak_rss_mb: float = 0.0
  note: str = ""
  load_avg_1min: float = dataclasses.field(default_factory=lambda: os.getloadavg()[0])

  @property
  def wall_s(self) -> float:
    return self.compile_s + self.run_s + self.other_s

  @property
  def run_steps(self) -> int:
    """Training steps summed over runs: points x steps."""
    return self.points * self.steps

  @property
  def steps_per_s(self) -> float:
    """Run-steps per wall second, compile included."""
    return self.run_steps / self.wall_s

  @property
  def run_steps_per_s(self) -> float:
    """Run-steps per second of running, compile excluded."""
    return self.run_steps / self.run_s

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out.update(wall_s=self.wall_s, run_steps=self.run_steps, steps_per_s=self.steps_per_s,
               run_steps_per_s=self.run_steps_per_s)
    return out


T = TypeVar("T")


def best_of(repeats: int, measure: Callable[[], T],
            timing_of: Callable[[T], LoopTiming] = lambda r: r) -> T:
  """Calls `measure` `repeats` times; keeps the result whose loop ran fastest (run_s).

  On a machine shared with other processes, the best of a few repeats is the one least
  disturbed. Its compile_s is replaced by the FIRST repeat's: later repeats find the
  executable in jax's in-process cache, so only the first compile is a real one. The kept
  timing's note says how many repeats there were.
  """
  if repeats <= 1:
    return measure()
  results = [measure() for _ in range(repeats)]
  best = min(results, key=lambda r: timing_of(r).run_s)
  kept = timing_of(best)
  kept.compile_s = timing_of(results[0]).compile_s
  kept.note += f"; run s best of {repeats} repeats, compile s from the first"
  return best


def subset_note(timed: int, total: int) -> str:
  if timed == total:
    return f"all {total} points timed"
  return f"timed {timed} of {total} points, run_s extrapolated per point"


def time_points(train_point: Callable[[int], Any], n_points: int, budget_s: float,
                min_points: int = 2, seed: int = 0) -> tuple[float, int]:
  """Runs points one after another until all ran or `budget_s` is spent.

  Points go in a fixed random order, so a subset mixes stable and diverging points.
  Returns (seconds for all points, extrapolated from the mean per timed point; number of
  points timed). At least `min_points` (or all, if fewer) are timed.
  """
  order = np.random.default_rng(seed).permutation(n_points)
  spent, timed = 0.0, 0
  for index in order:
    if timed >= min_points and spent >= budget_s:
      break
    t0 = time.perf_counter()
    train_point(int(index))
    spent += time.perf_counter() - t0
    timed += 1
  return spent / timed * n_points, timed
