"""Whole chunks dealt to devices: the same map on 1 or N devices, bit for bit.

With ``mesh.data = 1`` and several devices, a group's chunks are not split into lanes
over one multi-device program: XLA compiles a multi-device module (`shard_map` or
`pmap` alike) differently from a one-device module, and Adam's per-lane decay rates
then round differently in the last bit (docs/multi_device_numerics.md: 80 of the 160
default rows, 4 regime flips). Instead each device gets its own one-device executor
(`gradlab.sweep.executor.Executor` on a one-device mesh) and the chunks, at the size a
one-device sweep would use, are dealt round-robin to the devices of every process
(process-interleaved order, so every host gets work). Each device then runs exactly the
one-device program on exactly the chunks a one-device sweep forms, so every row equals
the one-device row bit for bit.

The price: each device compiles the group's program once (an executable is bound to its
device), and a group with fewer chunks than devices leaves devices idle; a sweep that
wants every device busy on few points sets a smaller `sweep.chunk_size`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections as mlc
import pandas as pd

from gradlab.sweep import grid
from gradlab.sweep import mesh as mesh_lib
from gradlab.sweep.executor import Executor, SweepStats
from gradlab.sweep.watchdog import Watchdog

log = logging.getLogger("gradlab")


def make_executor(cfg: mlc.ConfigDict, workdir: str, mesh: Any, stats: SweepStats,
                  axes: list[str], bar: Any = None,
                  on_compile: Callable[[int, float], None] | None = None
                  ) -> Executor | DealingExecutor:
  """A `DealingExecutor` with several devices and no data parallelism (``mesh.data =
  1``), else one `Executor` on the mesh (one device, or lanes x data parallelism)."""
  kind = DealingExecutor if mesh.shape[mesh_lib.DATA] == 1 and mesh.size > 1 else Executor
  return kind(cfg, workdir, mesh, stats, axes, bar, on_compile)


def deal_order(devices: list[Any]) -> list[Any]:
  """Devices ordered local index first, process second: chunk k goes to order[k % n],
  so consecutive chunks go to different hosts."""
  by_process: dict[int, list[Any]] = {}
  for d in sorted(devices, key=lambda d: (d.process_index, d.id)):
    by_process.setdefault(d.process_index, []).append(d)
  width = max(len(v) for v in by_process.values())
  return [v[i] for i in range(width) for v in by_process.values() if i < len(v)]


class DealingExecutor:
  """The `Executor` interface (estimate, run, watchdog) over one-device executors."""

  def __init__(self, cfg: mlc.ConfigDict, workdir: str, mesh: Any, stats: SweepStats,
               axes: list[str], bar: Any = None,
               on_compile: Callable[[int, float], None] | None = None):
    self.cfg, self.workdir, self.bar = cfg, workdir, bar
    self.order = deal_order(list(mesh.devices.flat))
    me = jax.process_index()
    self.subs: dict[Any, Executor] = {}
    first = None
    for d in self.order:
      if d.process_index == me:
        self.subs[d] = Executor(cfg, workdir, mesh_lib.make_mesh(1, [d]), stats, axes, bar,
                                on_compile, data=first.data if first else None)
        first = first or self.subs[d]
    self.lead = first

  @contextlib.contextmanager
  def watchdog(self) -> Iterator[None]:
    dog = Watchdog(self.workdir, float(self.cfg.sweep.chunk_timeout_s))
    try:
      with contextlib.ExitStack() as stack:
        for sub in self.subs.values():
          stack.enter_context(sub.watchdog(dog))
        yield
    finally:
      dog.stop()

  def estimate(self, groups: list[grid.Group], runs_per_group: list[int]) -> int:
    return self.lead.estimate(groups, runs_per_group)

  def run(self, group: grid.Group) -> list[pd.DataFrame]:
    """Runs every chunk of `group` dealt to this process's devices and writes their
    rows; returns them. A streamed group runs on the first device alone."""
    if not len(group):
      return []
    if int(group.cfg.data.stream):
      return self.lead.run(group)
    size, _ = self.lead.compiled_for(group)  # the one-device chunk size
    written: list[pd.DataFrame] = []
    pending: list[tuple[Executor, grid.Chunk, Any]] = []
    for k, chunk in enumerate(grid.chunks(group, size)):
      device = self.order[k % len(self.order)]
      if device not in self.subs:
        if self.bar is not None and jax.process_index() == 0:
          self.bar.update(chunk.size)  # another host runs and writes it
        continue
      sub = self.subs[device]
      _, compiled = sub.compiled_for(group, size)
      pending.append((sub, chunk, sub.dispatch(compiled, group, chunk)))
      if len(pending) > len(self.subs):  # keep every device busy while writing
        done = pending.pop(0)
        written += done[0].write(group, done[1], done[2])
    for sub, chunk, out in pending:
      written += sub.write(group, chunk, out)
    return written
