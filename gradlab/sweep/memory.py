"""How many lanes fit in a chunk, and how much a sweep will write.

With ``sweep.chunk_size = 0`` the engine compiles a trial chunk, reads the compiled
executable's memory analysis (bytes of arguments, outputs (twice: one chunk runs while
the last is written) and temporaries on one device), and takes the largest chunk under
``sweep.memory_budget`` bytes per device. The model of memory is affine in the lanes a device holds:

    bytes(lanes) = fixed + lanes * per_lane,

with `fixed` the replicated dataset and `per_lane` everything else of the trial divided
by its lanes per device. The program's own lane-independent buffers are thereby counted
per lane, so the model over-estimates every chunk at least as large as the trial (the
usual case: the trial is small); below it, it can fall short by those buffers alone.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from typing import Any

import jax
import ml_collections as mlc
import numpy as np

from gradlab.registry import ConfigError

log = logging.getLogger("gradlab")

TRIAL_LANES = 256          # lanes of the trial chunk (at most; rounded to the grid axis)
DEFAULT_FRACTION = 0.5     # default budget: this fraction of one device's memory
_ROW_BYTES = 16            # parquet bytes per result cell, generous (numbers, short labels)


def device_memory_bytes(device: Any | None = None) -> int:
  """Memory of one device: its allocator limit on accelerators; on CPU the machine's
  (or the container's) memory shared by the process's local devices."""
  device = device if device is not None else jax.local_devices()[0]
  try:
    stats = device.memory_stats() or {}
  except (RuntimeError, NotImplementedError):
    stats = {}
  if stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    try:
      with open(path) as f:
        text = f.read().strip()
      if text.isdigit():
        total = min(total, int(text))
    except OSError:
      pass
  return int(total // max(1, jax.local_device_count()))


def budget_bytes(memory_budget: float) -> int:
  """``sweep.memory_budget`` in bytes per device (0: half of one device's memory)."""
  if memory_budget > 0:
    return int(memory_budget)
  return int(DEFAULT_FRACTION * device_memory_bytes())


def _ceil_div(a: int, b: int) -> int:
  return -(-int(a) // int(b))


def trial_lanes(n_points: int, grid: int) -> int:
  """Lanes of the trial chunk: all points of a small group, else TRIAL_LANES, rounded up
  to a multiple of the mesh's grid axis."""
  return _ceil_div(min(n_points, TRIAL_LANES), grid) * grid


def compiled_bytes(compiled: Any) -> int | None:
  """Bytes one device needs to run `compiled` chunk after chunk: arguments, temporaries
  and TWO sets of outputs (the engine runs the next chunk while it writes the last),
  less what outputs alias; None where the backend gives no memory analysis."""
  try:
    m = compiled.memory_analysis()
  except (NotImplementedError, RuntimeError, AttributeError):
    return None
  if m is None:
    return None
  peak = getattr(m, "peak_memory_in_bytes", 0) or 0
  total = (m.argument_size_in_bytes + 2 * m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
  return int(max(peak, total))


@dataclass(frozen=True)
class ChunkChoice:
  """The chosen chunk size and the estimate behind it (bytes per device)."""

  size: int
  per_lane_bytes: float
  fixed_bytes: int
  budget_bytes: int

  def bytes_for(self, lanes_per_device: int) -> float:
    return self.fixed_bytes + lanes_per_device * self.per_lane_bytes


def choose_chunk_size(n_points: int, grid: int, trial: int, trial_bytes: int,
                      fixed_bytes: int, budget: int) -> ChunkChoice:
  """The chunk size for `n_points` points from one trial compile of `trial` lanes that
  needed `trial_bytes` per device, `fixed_bytes` of which do not grow with the lanes.

  Takes the largest number of lanes per device under `budget`, then spreads the points
  evenly over as few chunks as that allows (so the last chunk is not mostly padding),
  rounded up to a multiple of `grid`. Raises a ConfigError when not even one lane fits.
  """
  per_lane = max(trial_bytes - fixed_bytes, 1) / (trial / grid)
  max_per_device = math.floor((budget - fixed_bytes) / per_lane)
  if max_per_device < 1:
    raise ConfigError(
      f"one lane needs about {describe_bytes(fixed_bytes + per_lane)} per device but "
      f"'sweep.memory_budget' allows {describe_bytes(budget)}: raise the budget, or shrink "
      f"the model, the batch or the logged trajectory (train.log_every)")
  max_chunk = max_per_device * grid
  n_chunks = _ceil_div(n_points, max_chunk)
  size = _ceil_div(_ceil_div(n_points, n_chunks), grid) * grid
  return ChunkChoice(size, per_lane, fixed_bytes, budget)


def tree_bytes(tree: Any) -> int:
  """Bytes of the arrays (or shape/dtype structs) of a pytree."""
  return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize
                 for x in jax.tree_util.tree_leaves(tree)))


def results_bytes(n_rows: int, n_columns: int, trajectory_bytes_per_run: int,
                  keep_trajectories: bool) -> tuple[int, int]:
  """(rows, trajectories) bytes a sweep writes, before compression."""
  rows = n_rows * n_columns * _ROW_BYTES
  return rows, (n_rows * trajectory_bytes_per_run if keep_trajectories else 0)


def describe_bytes(n: float) -> str:
  """'12 KiB', '12.3 MiB', '4.56 GiB'."""
  if n < 2**20:
    return f"{n / 2**10:,.0f} KiB"
  return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def memory_choice(cfg: mlc.ConfigDict, points: int, n_grid: int, trial_size: int,
                  compiled: Any, data_bytes: int, group_index: int) -> int | None:
  """The chunk size that fits ``sweep.memory_budget``, from the memory analysis of the
  trial compile at `trial_size` lanes; None (keep the trial size) on a backend without
  one."""
  budget = budget_bytes(float(cfg.sweep.memory_budget))
  trial_bytes = compiled_bytes(compiled)
  if trial_bytes is None:
    log.warning("no memory analysis on this backend: chunks of %d lanes", trial_size)
    return None
  choice = choose_chunk_size(points, n_grid, trial_size, trial_bytes, data_bytes,
                                    budget)
  log.info("group %d: %s per lane per device, budget %s per device: chunks of %d",
           group_index, describe_bytes(choice.per_lane_bytes),
           describe_bytes(budget), choice.size)
  return choice.size


def estimate_results(runs_per_group: list[int], trajectory_bytes: list[int], n_axes: int,
                     keep_trajectories: bool, workdir: str) -> int:
  """Logs, and returns, the bytes that runs_per_group[i] runs of groups whose lanes
  write trajectory_bytes[i] each will write (rows + trajectories); warns when the disk
  under `workdir` has less free."""
  n_columns = 30 + n_axes
  rows_b, traj_b = 0, 0
  for n, per_lane in zip(runs_per_group, trajectory_bytes, strict=True):
    r, t = results_bytes(n, n_columns, per_lane, keep_trajectories)
    rows_b, traj_b = rows_b + r, traj_b + t
  traj_text = (f"trajectories up to {describe_bytes(traj_b)} (before compression; "
               f"train.log_every thins them, sweep.keep_trajectories=False drops them)"
               if keep_trajectories else "no trajectories (sweep.keep_trajectories=False)")
  log.info("estimated results: %d rows, about %s, and %s", sum(runs_per_group),
           describe_bytes(rows_b), traj_text)
  free = _free_bytes(workdir)
  if free is not None and rows_b + traj_b > free:
    log.warning("the results may not fit: about %s to write, %s free under '%s'",
                describe_bytes(rows_b + traj_b), describe_bytes(free), workdir)
  return rows_b + traj_b


def _free_bytes(workdir: str) -> int | None:
  try:
    return shutil.disk_usage(workdir).free
  except OSError:
    return None
