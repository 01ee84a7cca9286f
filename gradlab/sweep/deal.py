"""Whole chunks dealt to devices: the same map on 1 or N devices, bit for bit.

With ``mesh.data = 1`` and several devices, a group's chunks are not split into lanes
over one multi-device program: XLA compiles a multi-device module (`shard_map` or
`pmap` alike) differently from a one-device module, and Adam's per-lane decay rates
then round differently in the last bit (docs/multi_device_numerics.md: 80 of the 160
default rows, 4 regime flips). Instead each device gets its own one-device executor
(`gradlab.sweep.executor.Executor` on a one-device mesh) and whole chunks are dealt
round-robin to the processes (process-interleaved device order, so every host gets
work); within a process each chunk goes to whichever of its devices is free first. Each
device runs exactly the one-device program on whole chunks, so every row equals the
one-device row at the same chunk size bit for bit.

One compile per group and process: the first device compiles, the others load the same
executable (`gradlab.sweep.relocate`) in background threads while the first already
runs chunks. With ``sweep.chunk_size = 0`` the chunk size chosen from memory is capped
so that every device gets a chunk (`Executor.spread_cap`); pin ``sweep.chunk_size`` for
rows that are bit for bit the same on any number of devices (a different chunk size
can change the last bit of some lanes: docs/multi_device_numerics.md).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import time
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
                  on_compile: Callable[[int, float], None] | None = None,
                  on_chunk: Callable[[pd.DataFrame], None] | None = None
                  ) -> Executor | DealingExecutor:
  """A `DealingExecutor` with several devices and no data parallelism (``mesh.data =
  1``), else one `Executor` on the mesh (one device, or lanes x data parallelism)."""
  kind = DealingExecutor if mesh.shape[mesh_lib.DATA] == 1 and mesh.size > 1 else Executor
  return kind(cfg, workdir, mesh, stats, axes, bar, on_compile, on_chunk=on_chunk)


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
               on_compile: Callable[[int, float], None] | None = None,
               on_chunk: Callable[[pd.DataFrame], None] | None = None):
    self.cfg, self.workdir, self.bar = cfg, workdir, bar
    self.order = deal_order(list(mesh.devices.flat))
    me = jax.process_index()
    self.subs: dict[Any, Executor] = {}
    first = None
    for d in self.order:
      if d.process_index == me:
        self.subs[d] = Executor(cfg, workdir, mesh_lib.make_mesh(1, [d]), stats, axes, bar,
                                on_compile, data=first.data if first else None,
                                on_chunk=on_chunk)
        first = first or self.subs[d]
    self.lead = first
    for sub in self.subs.values():
      sub.spread = len(self.order)

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
    rows; returns them. A streamed group runs on the first device alone; in a
    multi-host sweep its chunks are dealt to the processes (chunk k to process
    k mod P), each reading the segments of its own chunks."""
    if not len(group):
      return []
    if int(group.cfg.data.stream):
      if jax.process_count() == 1:
        return self.lead.run(group)
      me, count = jax.process_index(), jax.process_count()
      return self.lead.run(group, owned=lambda k: k % count == me)
    size, _ = self.lead.compiled_for(group)  # the one-device chunk size
    mine: collections.deque[grid.Chunk] = collections.deque()
    for k, chunk in enumerate(grid.chunks(group, size)):
      if self.order[k % len(self.order)] in self.subs:
        mine.append(chunk)
      elif self.bar is not None and jax.process_index() == 0:
        self.bar.update(chunk.size)  # another host runs and writes it
    return self._run_local(group, size, mine)

  def _run_local(self, group: grid.Group, size: int, todo: collections.deque[grid.Chunk]
                 ) -> list[pd.DataFrame]:
    """Runs this process's chunks of `group` on its devices, each chunk on whichever
    device is free first: the lead device starts at once with the compiled program while
    the others load it (`Executor.adopt`, in background threads) and join when ready.
    Every device runs the same binary on whole chunks, so which device ran a chunk does
    not change its rows."""
    _, compiled = self.lead.compiled_for(group, size)
    ready: dict[Executor, Any] = {self.lead: compiled}
    others = [sub for sub in self.subs.values() if sub is not self.lead]
    written: list[pd.DataFrame] = []
    busy: dict[Executor, tuple[grid.Chunk, Any]] = {}
    stats = self.lead.stats
    run_before, t_start, writing = stats.run_seconds, time.perf_counter(), 0.0
    with concurrent.futures.ThreadPoolExecutor(max(1, len(others))) as pool:
      loading = {sub: pool.submit(sub.adopt, self.lead, group, size)
                 for sub in (others if len(todo) > 1 else [])}
      while todo or busy:
        for sub, future in list(loading.items()):
          if future.done():
            ready[sub] = future.result()[1]
            del loading[sub]
        for sub, exe in ready.items():
          if todo and sub not in busy:
            chunk = todo.popleft()
            busy[sub] = (chunk, sub.dispatch(exe, group, chunk))
        done = [sub for sub, (_, out) in busy.items() if _finished(out)]
        for sub in done:
          chunk, out = busy.pop(sub)
          t_write = time.perf_counter()
          written += sub.write(group, chunk, out)
          writing += time.perf_counter() - t_write
        if not done:
          time.sleep(POLL_S)
      for future in loading.values():
        future.cancel()
    # running = the loop's time less writing rows (devices compute while rows are written)
    stats.run_seconds = run_before + time.perf_counter() - t_start - writing
    return written


POLL_S = 0.002  # how often the dealing loop looks for a finished chunk or a loaded device


def _finished(out: Any) -> bool:
  """Whether a dispatched chunk's outputs are computed (they finish together)."""
  leaf = jax.tree_util.tree_leaves(out)[0]
  return not hasattr(leaf, "is_ready") or leaf.is_ready()
