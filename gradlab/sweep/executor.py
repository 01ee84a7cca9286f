"""The executor: runs chunks of a plan's groups as lanes of jit(vmap(run)) on a mesh.

Both sweep modes (`gradlab.sweep.dense` for the grid, `gradlab.sweep.boundary` for the
boundary search) hand it groups of a `gradlab.sweep.grid.Plan`. For each group of equal
static structure it compiles
``jit(vmap(run))`` ONCE for the chunk shape (`gradlab.sweep.mesh.lanes_program`), with
the lanes sharded over the mesh's 'grid' axis and the dataset replicated (with several
devices and ``mesh.data = 1``, `gradlab.sweep.deal` gives each device an executor of
its own on a one-device mesh and deals it whole chunks),
then feeds it every chunk of that group (padded to a multiple of the grid axis; padded
lanes never reach the results). The chunk size is `sweep.chunk_size`, or with 0 the
largest that fits `sweep.memory_budget` (`gradlab.sweep.memory`). Each process writes
the real lanes its devices hold (`gradlab.sweep.rows`) with `gradlab.results`.

What every mode does first (the lock, the mesh, the compile cache, the resume check,
config.json and the runs already done) is `gradlab.sweep.begin.start`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pandas as pd

from gradlab import results
from gradlab.compile_options import compile_lowered
from gradlab.losses import chance_loss
from gradlab.optim.fused import INDEX_KEY
from gradlab.step import measures_initial_sharpness
from gradlab.sweep import grid, memory, relocate
from gradlab.sweep import mesh as mesh_lib
from gradlab.sweep.group_data import GroupData
from gradlab.sweep.rows import TRAJECTORY_FIELDS, summary_rows, trajectory_arrays
from gradlab.sweep.streamed import StreamedRunner
from gradlab.sweep.watchdog import NoWatchdog, Watchdog
from gradlab.train import Run, build_run, make_data_arrays

log = logging.getLogger("gradlab")


@dataclasses.dataclass
class SweepStats:
  """Counts and timings of one `run_sweep` call. Compiles of trial chunks that only sized
  the real chunks (`sweep.chunk_size = 0`) are counted apart from the real ones."""

  n_points: int
  n_groups: int
  n_compiles: int
  n_skipped: int
  compile_seconds: float
  run_seconds: float
  wall_seconds: float
  n_trial_compiles: int = 0
  trial_compile_seconds: float = 0.0
  n_corrupt_files: int = 0
  n_devices: int = 1
  n_processes: int = 1
  chunk_sizes: dict[int, int] = dataclasses.field(default_factory=dict)
  estimated_bytes: int = 0
  n_relocations: int = 0  # executables loaded for another device instead of compiled
  relocate_seconds: float = 0.0
  boundary: Any = None  # sweep.mode='boundary': the `gradlab.sweep.boundary.Boundary`


@dataclasses.dataclass
class _Prepared:
  """What a group needs before its first chunk: the lowered function at its first chunk
  shape (compiled on first use), data on the mesh, and what its rows need."""

  run: Run
  data: Any
  data_bytes: int
  layer_names: list[str]
  chance: float
  planned_points: int    # points the chunk size is chosen for
  first_size: int
  lowered: Any
  trajectory_bytes: int  # per run, as written (uncompressed)
  hp_names: tuple[str, ...] = ()  # the lanes' hparams (with 'opt_index' when fused)

  @property
  def fused(self) -> bool:
    """Whether the program holds several optimizers (``sweep.fuse_optimizers``)."""
    return self.hp_names[-1:] == (INDEX_KEY,)


def after_chunk(hook: Callable[[pd.DataFrame], None], rows: pd.DataFrame) -> None:
  """Calls `hook(rows)` after a chunk's files are written (the live index.html, the
  TensorBoard sessions). Its failure is logged and never stops the sweep: the chunk is
  already safe on disk."""
  try:
    hook(rows)
  except Exception as e:  # noqa: BLE001 - a view of the results must not lose them
    log.warning("%s failed on runs %s (%s: %s); their results are written, the sweep goes "
                "on", getattr(hook, "__name__", type(hook).__name__),
                rows["run_id"].tolist() if "run_id" in rows else "?", type(e).__name__, e)


class Executor:
  """Runs points of groups as lanes on the mesh and writes their rows.

  `prepare` builds and lowers each group's function (no compile yet) so the size of
  what the runs will write is known before anything runs; `run` compiles each group
  once, on first use, and runs and writes every chunk of the points it is given.
  """

  def __init__(self, cfg: mlc.ConfigDict, workdir: str, mesh: Any, stats: SweepStats,
               axes: list[str], bar: Any = None,
               on_compile: Callable[[int, float], None] | None = None,
               data: GroupData | None = None,
               on_chunk: Callable[[pd.DataFrame], None] | None = None):
    self.cfg, self.workdir, self.mesh, self.stats, self.axes = cfg, workdir, mesh, stats, axes
    self.bar, self.on_compile, self.on_chunk = bar, on_compile, on_chunk
    self.grid = mesh_lib.grid_size(mesh)
    self.platform = mesh.devices.flat[0].platform
    self.process = jax.process_index()
    self.keep_trajectories = bool(cfg.sweep.keep_trajectories)
    self._prepared: dict[int, _Prepared] = {}
    self._compiled: dict[int, tuple[int, Any]] = {}
    self.fixed_sizes: dict[int, int] = {}  # group -> chunk size decided elsewhere (dealing)
    self.spread = 1  # devices a group's chunks are dealt over (`gradlab.sweep.deal`)
    self._from_cache: set[int] = set()  # groups whose executable came from the disk cache
    self._loaded: dict[int, tuple[Any, Any]] = {}  # id(lead's executable) -> what adopt made
    self.data = GroupData(mesh, shared=data)
    self._runners: dict[int, StreamedRunner] = {}
    self._dog: Watchdog | NoWatchdog = NoWatchdog()

  @contextlib.contextmanager
  def watchdog(self, dog: Watchdog | None = None) -> Iterator[None]:
    """Runs the chunks inside under the per-chunk watchdog (`gradlab.sweep.watchdog`;
    `dog`: one shared with other executors, which its owner stops)."""
    self._dog = dog or Watchdog(self.workdir, float(self.cfg.sweep.chunk_timeout_s))
    try:
      yield
    finally:
      if dog is None:
        self._dog.stop()
      self._dog = NoWatchdog()

  def _streamed(self, group: grid.Group) -> StreamedRunner:
    """The segment loop of a streamed group (built once)."""
    if group.index not in self._runners:
      gcfg = group.cfg
      prep = self._prepared[group.index]
      stream = self.data.stream(gcfg)
      host = jax.tree_util.tree_map(np.asarray,
                                    make_data_arrays(stream.dataset, gcfg.train.eval_size))
      self._runners[group.index] = StreamedRunner(prep.run, gcfg, stream, host, self.mesh)
      self.stats.n_compiles += 1
      self.stats.chunk_sizes[group.index] = prep.first_size
    return self._runners[group.index]

  def _lower(self, run_fn: Callable[..., Any], hparams: list[str], size: int,
             data: Any) -> Any:
    lanes = mesh_lib.lane_sharding(self.mesh)
    fn = jax.jit(mesh_lib.lanes_program(run_fn, self.mesh),
                 in_shardings=(lanes, lanes, mesh_lib.replicated(self.mesh)),
                 out_shardings=lanes)
    hp_spec = {k: jax.ShapeDtypeStruct((size,), jnp.float32) for k in hparams}
    key_spec = jax.ShapeDtypeStruct((size, 2), jnp.uint32)
    return fn.lower(hp_spec, key_spec, data)

  def prepare(self, groups: list[grid.Group]) -> None:
    """Builds and lowers every group not prepared yet, at its first chunk shape
    (`sweep.chunk_size`, or the trial shape when it is chosen from memory)."""
    for group in groups:
      if group.index in self._prepared:
        continue
      gcfg = group.cfg
      dataset = self.data.dataset(gcfg)
      fused = self._fused(group, dataset.task)
      if fused and group.fused_with in self._prepared:  # the family's program
        self._prepared[group.index] = self._prepared[group.fused_with]
        continue
      data, data_bytes = self.data.on_mesh(gcfg, dataset)
      run = build_run(gcfg, dataset.num_classes,
                      batch_constraint=mesh_lib.batch_constraint(self.mesh),
                      task=dataset.task, fused=fused)
      size = (self.fixed_sizes.get(group.index)
              or grid.chunk_size_for(self.cfg, len(group), self.grid)
              or memory.trial_lanes(self.spread_cap(len(group)), self.grid))
      names = (*group.hparams, *((INDEX_KEY,) if fused else ()))
      lowered = self._lower(run.run, list(names), size, data)
      out = lowered.out_info
      traj_bytes = memory.tree_bytes([getattr(out, f) for f in TRAJECTORY_FIELDS]) // size
      self._prepared[group.index] = _Prepared(
        run, data, data_bytes, run.layer_names,
        chance_loss(gcfg.train, dataset),
        len(group), size, lowered, int(traj_bytes), names)
      if fused:
        self._prepared.setdefault(group.fused_with, self._prepared[group.index])

  def _fused(self, group: grid.Group, task: Any) -> tuple[str, ...]:
    """The optimizer names the group's program holds (``sweep.fuse_optimizers``), or ()
    to compile it alone: not fused, or its runs measure the step-0 sharpness."""
    if group.fused_with < 0 or measures_initial_sharpness(group.cfg, task):
      return ()
    return group.fused

  def spread_cap(self, n_points: int) -> int:
    """The most lanes a chunk chosen from memory may hold so that `n_points` points make
    a chunk for each of the `spread` devices they are dealt over (a multiple of the
    grid axis)."""
    return grid.round_up(-(-n_points // self.spread), self.grid)

  def estimate(self, groups: list[grid.Group], runs_per_group: list[int]) -> int:
    """Logs, and returns, the bytes the runs will write (rows + trajectories)."""
    self.prepare(groups)
    traj = [self._prepared[g.index].trajectory_bytes for g in groups]
    return memory.estimate_results(runs_per_group, traj, len(self.axes), self.keep_trajectories,
                            self.workdir)

  def _compile(self, lowered: Any, group: grid.Group) -> Any:
    """`lowered` compiled with the group's ``sweep.cpu_opt_level`` (`gradlab.compile_options`)."""
    return compile_lowered(lowered, int(group.cfg.sweep.cpu_opt_level), self.platform)

  def _compile_for(self, group: grid.Group) -> tuple[int, Any]:
    """(chunk size, compiled) of a group: compiled once, on first use (once per family
    of fused groups: ``sweep.fuse_optimizers``)."""
    if group.index in self._compiled:
      return self._compiled[group.index]
    self.prepare([group])
    if self._prepared[group.index].fused and (
        group.fused_with in self._compiled):
      self._compiled[group.index] = self._compiled[group.fused_with]
      self.stats.chunk_sizes[group.index] = self._compiled[group.index][0]
      return self._compiled[group.index]
    prep = self._prepared[group.index]
    relocate.CacheHits.listen()
    hits = relocate.CacheHits.count
    t0 = time.perf_counter()
    compiled = self._compile(prep.lowered, group)
    dt = time.perf_counter() - t0
    size = prep.first_size
    if not int(self.cfg.sweep.chunk_size) and group.index not in self.fixed_sizes:
      choice = memory.memory_choice(self.cfg, prep.planned_points, self.grid, size, compiled,
                             prep.data_bytes, group.index)
      if choice is not None:
        choice = min(choice, self.spread_cap(prep.planned_points))
      if choice is not None and choice != size:
        self.stats.n_trial_compiles += 1
        self.stats.trial_compile_seconds += dt
        size = choice
        t0 = time.perf_counter()
        compiled = self._compile(self._lower(prep.run.run, list(prep.hp_names), size,
                                             prep.data), group)
        dt = time.perf_counter() - t0
    self.stats.n_compiles += 1
    self.stats.compile_seconds += dt
    self.stats.chunk_sizes[group.index] = size
    log.info("group %d compiled in %.1fs (%d points, chunks of %d)", group.index, dt,
             prep.planned_points, size)
    if self.on_compile is not None:
      self.on_compile(group.index, dt)
    self._compiled[group.index] = (size, compiled)
    if prep.fused:
      self._compiled.setdefault(group.fused_with, (size, compiled))
    if relocate.CacheHits.count > hits:
      self._from_cache.add(group.index)
    return size, compiled

  def run(self, group: grid.Group, owned: Any = None) -> list[pd.DataFrame]:
    """Runs every point of `group` (padded chunks of the group's size) and writes the
    rows of this process's real lanes; returns those rows. The next chunk is dispatched
    before the last one is written, so writing overlaps computing. `owned(k)`, when
    given, picks the chunks (by index) this process runs (a multi-host streamed group)."""
    if not len(group):
      return []
    self._dog.idle()  # building, loading data and compiling are not chunks
    if int(group.cfg.data.stream):
      self.prepare([group])
      compiled = self._streamed(group)
      size = self._prepared[group.index].first_size
    else:
      size, compiled = self._compile_for(group)
    self._dog.busy()
    written: list[pd.DataFrame] = []
    pending = None
    for k, chunk in enumerate(grid.chunks(group, size)):
      if owned is not None and not owned(k):
        continue
      out = self.dispatch(compiled, group, chunk)
      if pending is not None:
        written += self.write(group, *pending)
      pending = (chunk, out)
    if pending is not None:
      written += self.write(group, *pending)
    return written

  def compiled_for(self, group: grid.Group, size: int | None = None) -> tuple[int, Any]:
    """(chunk size, compiled) of a non-streamed group, at `size` lanes when given."""
    if size is not None:
      self.fixed_sizes[group.index] = size
    self._dog.idle()
    out = self._compile_for(group)
    self._dog.busy()
    return out

  def adopt(self, lead: Executor, group: grid.Group, size: int) -> tuple[int, Any]:
    """(chunk size, compiled) of a non-streamed group on this executor's device: the
    `lead` executor's executable (compiled there once, at `size` lanes) loaded for this
    device (`gradlab.sweep.relocate`: the same binary, so the same rows bit for bit);
    compiled here when the backend cannot relocate executables. Safe to call from a
    background thread while the lead runs chunks (`gradlab.sweep.deal`)."""
    if group.index in self._compiled:
      return self._compiled[group.index]
    size, compiled = lead.compiled_for(group, size)
    if id(compiled) in self._loaded:  # a fused sibling's program, loaded already
      self._prepared[group.index], self._compiled[group.index] = self._loaded[id(compiled)]
      return self._compiled[group.index]
    if group.index in lead._from_cache:  # not relocatable: see gradlab.sweep.relocate
      return self.compiled_for(group, size)
    t0 = time.perf_counter()
    moved = relocate.to_device(compiled, self.mesh.devices.flat[0])
    if moved is None:
      return self.compiled_for(group, size)
    data, data_bytes = self.data.on_mesh(group.cfg, self.data.dataset(group.cfg))
    self._prepared[group.index] = dataclasses.replace(
      lead._prepared[group.index], data=data, data_bytes=data_bytes, lowered=None)
    self.stats.n_relocations += 1
    self.stats.relocate_seconds += time.perf_counter() - t0
    self.stats.chunk_sizes.setdefault(group.index, size)
    self._compiled[group.index] = (size, moved)
    self._loaded[id(compiled)] = (self._prepared[group.index], (size, moved))
    return size, moved

  def dispatch(self, compiled: Any, group: grid.Group, chunk: grid.Chunk) -> Any:
    """Starts one chunk of `group` on the mesh (asynchronous); returns its outputs."""
    prep = self._prepared[group.index]
    t0 = time.perf_counter()
    keys = mesh_lib.host_keys(chunk.seeds)
    hparams = chunk.hparams
    if prep.fused:  # each lane's optimizer in the program
      index = group.fused.index(group.cfg.optimizer.name)
      hparams = {**hparams, INDEX_KEY: np.full(len(chunk.seeds), index, np.float32)}
    hp, keys = mesh_lib.to_global((hparams, keys), mesh_lib.lane_sharding(self.mesh))
    out = (compiled(hp, keys) if isinstance(compiled, StreamedRunner)
           else compiled(hp, keys, prep.data))
    self.stats.run_seconds += time.perf_counter() - t0
    return out

  def write(self, group: grid.Group, chunk: grid.Chunk, out: Any) -> list[pd.DataFrame]:
    return self._write(group, self._prepared[group.index], chunk, out)

  def _write(self, group: grid.Group, prep: _Prepared, chunk: grid.Chunk, out: Any
             ) -> list[pd.DataFrame]:
    """Waits for a chunk's outputs and writes the rows of this process's real lanes."""
    t0 = time.perf_counter()
    lanes, local = mesh_lib.local_lanes(out)
    self._dog.beat()
    self.stats.run_seconds += time.perf_counter() - t0
    mine = chunk.take(lanes, self.process)
    rows = []
    if mine.size:
      real = lanes < chunk.size
      traj = jax.tree_util.tree_map(lambda x: x[real], local)
      rows.append(summary_rows(mine, traj, self.axes, group.cfg, prep.chance,
                                prep.layer_names, prep.run))
      arrays = (trajectory_arrays(mine, traj, prep.layer_names)
                if self.keep_trajectories else None)
      results.write_chunk(self.workdir, group.index, int(mine.run_ids[0]), rows[0], arrays,
                          self.process)
      if self.cfg.sweep.tensorboard:
        after_chunk(self._write_tensorboard, rows[0])
      if self.on_chunk is not None:
        after_chunk(self.on_chunk, rows[0])
    if self.bar is not None:
      self.bar.update(chunk.size)
    return rows

  def _write_tensorboard(self, rows: pd.DataFrame) -> None:
    """``sweep.tensorboard``: the rows' HParams sessions (`gradlab.tensorboard`), written
    after the rows are on disk (through `after_chunk`: a failure is logged, the sweep
    goes on)."""
    from gradlab import tensorboard  # tensorboardX only when asked for

    tensorboard.write_sweep_hparams(rows, self.cfg.sweep.axes,
                                    os.path.join(self.workdir, tensorboard.TENSORBOARD_DIR))
