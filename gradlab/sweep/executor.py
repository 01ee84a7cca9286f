"""The executor: runs chunks of a plan's groups as lanes of jit(vmap(run)) on a mesh.

Both sweep modes (`gradlab.sweep.dense` for the grid, `gradlab.sweep.boundary` for the
boundary search) hand it groups of a `gradlab.sweep.grid.Plan`. For each group of equal
static structure it compiles
``jit(vmap(run, in_axes=(0, 0, None), spmd_axis_name='grid'))`` ONCE for the chunk
shape, with the lanes sharded over the mesh's 'grid' axis and the dataset replicated,
then feeds it every chunk of that group (padded to a multiple of the grid axis; padded
lanes never reach the results). The chunk size is `sweep.chunk_size`, or with 0 the
largest that fits `sweep.memory_budget` (`gradlab.sweep.memory`). Each process writes
the real lanes its devices hold (`gradlab.sweep.rows`) with `gradlab.results`.

`start` is what every mode does first: the mesh, the compile cache (`gradlab.sweep.cache`,
so a rerun's compiles load from disk), the resume check (`gradlab.sweep.meta`), config.json
and the runs already done, after setting aside corrupt chunk files (their runs are
recomputed).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gradlab import results
from gradlab.data import load_dataset
from gradlab.data.stream import open_stream
from gradlab.losses import chance_loss
from gradlab.sweep import cache, grid, memory
from gradlab.sweep import mesh as mesh_lib
from gradlab.sweep.meta import check_resume, sweep_metadata
from gradlab.sweep.rows import TRAJECTORY_FIELDS, summary_rows, trajectory_arrays
from gradlab.sweep.streamed import StreamedRunner
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


class Executor:
  """Runs points of groups as lanes on the mesh and writes their rows.

  `prepare` builds and lowers each group's function (no compile yet) so the size of
  what the runs will write is known before anything runs; `run` compiles each group
  once, on first use, and runs and writes every chunk of the points it is given.
  """

  def __init__(self, cfg: mlc.ConfigDict, workdir: str, mesh: Any, stats: SweepStats,
               axes: list[str], bar: Any = None,
               on_compile: Callable[[int, float], None] | None = None):
    self.cfg, self.workdir, self.mesh, self.stats, self.axes = cfg, workdir, mesh, stats, axes
    self.bar, self.on_compile = bar, on_compile
    self.grid = mesh_lib.grid_size(mesh)
    self.process = jax.process_index()
    self.keep_trajectories = bool(cfg.sweep.keep_trajectories)
    self._prepared: dict[int, _Prepared] = {}
    self._compiled: dict[int, tuple[int, Any]] = {}
    self._datasets: dict[tuple[Any, ...], Any] = {}
    self._streams: dict[tuple[Any, ...], Any] = {}
    self._runners: dict[int, StreamedRunner] = {}
    self._data: dict[tuple[str, str, int], tuple[Any, int]] = {}

  def _dataset(self, gcfg: mlc.ConfigDict) -> Any:
    """The group's dataset; for a streamed group (data.stream > 0) the stream's view of
    it (eval slice and test split only; `gradlab.data.stream`)."""
    key = (*dataset_key(gcfg), int(gcfg.train.eval_size) if gcfg.data.stream else None)
    if key not in self._datasets:
      if int(gcfg.data.stream):
        self._streams[key] = open_stream(gcfg.data.name, gcfg.data.data_dir or None,
                                         gcfg.data, int(gcfg.train.eval_size))
        self._datasets[key] = self._streams[key].dataset
      else:
        self._datasets[key] = load_dataset(gcfg.data.name, gcfg.data.data_dir or None,
                                           data_cfg=gcfg.data)
    return self._datasets[key]

  def _streamed(self, group: grid.Group) -> StreamedRunner:
    """The segment loop of a streamed group (built once)."""
    if group.index not in self._runners:
      gcfg = group.cfg
      prep = self._prepared[group.index]
      key = (*dataset_key(gcfg), int(gcfg.train.eval_size))
      host = jax.tree_util.tree_map(np.asarray,
                                    make_data_arrays(self._datasets[key], gcfg.train.eval_size))
      self._runners[group.index] = StreamedRunner(prep.run, gcfg, self._streams[key], host,
                                                  self.mesh)
      self.stats.n_compiles += 1
      self.stats.chunk_sizes[group.index] = prep.first_size
    return self._runners[group.index]

  def _global_data(self, gcfg: mlc.ConfigDict, dataset: Any) -> tuple[Any, int]:
    key = (*dataset_key(gcfg), int(gcfg.train.eval_size))
    if key not in self._data:
      host = jax.tree_util.tree_map(np.asarray,
                                    make_data_arrays(dataset, gcfg.train.eval_size))
      self._data[key] = (mesh_lib.to_global(host, mesh_lib.replicated(self.mesh)),
                         memory.tree_bytes(host))
    return self._data[key]

  def _lower(self, run_fn: Callable[..., Any], hparams: list[str], size: int,
             data: Any) -> Any:
    lanes = mesh_lib.lane_sharding(self.mesh)
    vmapped = jax.vmap(run_fn, in_axes=(0, 0, None), spmd_axis_name=mesh_lib.GRID)
    fn = jax.jit(vmapped, in_shardings=(lanes, lanes, mesh_lib.replicated(self.mesh)),
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
      dataset = self._dataset(gcfg)
      data, data_bytes = self._global_data(gcfg, dataset)
      run = build_run(gcfg, dataset.num_classes,
                      batch_constraint=mesh_lib.batch_constraint(self.mesh),
                      task=dataset.task)
      size = (grid.chunk_size_for(self.cfg, len(group), self.grid)
              or memory.trial_lanes(len(group), self.grid))
      lowered = self._lower(run.run, list(group.hparams), size, data)
      out = lowered.out_info
      traj_bytes = memory.tree_bytes([getattr(out, f) for f in TRAJECTORY_FIELDS]) // size
      self._prepared[group.index] = _Prepared(
        run, data, data_bytes, run.layer_names,
        chance_loss(gcfg.train, dataset),
        len(group), size, lowered, int(traj_bytes))

  def estimate(self, groups: list[grid.Group], runs_per_group: list[int]) -> int:
    """Logs, and returns, the bytes the runs will write (rows + trajectories)."""
    self.prepare(groups)
    n_rows = sum(runs_per_group)
    n_columns = 30 + len(self.axes)
    rows_b, traj_b = 0, 0
    for group, n in zip(groups, runs_per_group, strict=True):
      r, t = memory.results_bytes(n, n_columns, self._prepared[group.index].trajectory_bytes,
                                  self.keep_trajectories)
      rows_b, traj_b = rows_b + r, traj_b + t
    traj_text = (f"trajectories up to {memory.describe_bytes(traj_b)} (before compression; "
                 f"train.log_every thins them, sweep.keep_trajectories=False drops them)"
                 if self.keep_trajectories else "no trajectories (sweep.keep_trajectories=False)")
    log.info("estimated results: %d rows, about %s, and %s", n_rows,
             memory.describe_bytes(rows_b), traj_text)
    free = _free_bytes(self.workdir)
    if free is not None and rows_b + traj_b > free:
      log.warning("the results may not fit: about %s to write, %s free under '%s'",
                  memory.describe_bytes(rows_b + traj_b), memory.describe_bytes(free),
                  self.workdir)
    return rows_b + traj_b

  def _compile_for(self, group: grid.Group) -> tuple[int, Any]:
    """(chunk size, compiled) of a group: compiled once, on first use."""
    if group.index in self._compiled:
      return self._compiled[group.index]
    self.prepare([group])
    prep = self._prepared[group.index]
    t0 = time.perf_counter()
    compiled = prep.lowered.compile()
    dt = time.perf_counter() - t0
    size = prep.first_size
    if not int(self.cfg.sweep.chunk_size):
      budget = memory.budget_bytes(float(self.cfg.sweep.memory_budget))
      trial_bytes = memory.compiled_bytes(compiled)
      if trial_bytes is None:
        log.warning("no memory analysis on this backend: chunks of %d lanes", size)
      else:
        choice = memory.choose_chunk_size(prep.planned_points, self.grid, size, trial_bytes,
                                          prep.data_bytes, budget)
        log.info("group %d: %s per lane per device, budget %s per device: chunks of %d",
                 group.index, memory.describe_bytes(choice.per_lane_bytes),
                 memory.describe_bytes(budget), choice.size)
        if choice.size != size:
          self.stats.n_trial_compiles += 1
          self.stats.trial_compile_seconds += dt
          size = choice.size
          t0 = time.perf_counter()
          compiled = self._lower(prep.run.run, list(group.hparams), size,
                                 prep.data).compile()
          dt = time.perf_counter() - t0
    self.stats.n_compiles += 1
    self.stats.compile_seconds += dt
    self.stats.chunk_sizes[group.index] = size
    log.info("group %d compiled in %.1fs (%d points, chunks of %d)", group.index, dt,
             prep.planned_points, size)
    if self.on_compile is not None:
      self.on_compile(group.index, dt)
    self._compiled[group.index] = (size, compiled)
    return size, compiled

  def run(self, group: grid.Group) -> list[pd.DataFrame]:
    """Runs every point of `group` (padded chunks of the group's size) and writes the
    rows of this process's real lanes; returns those rows. The next chunk is dispatched
    before the last one is written, so writing overlaps computing."""
    if not len(group):
      return []
    if int(group.cfg.data.stream):
      self.prepare([group])
      compiled = self._streamed(group)
      size = self._prepared[group.index].first_size
    else:
      size, compiled = self._compile_for(group)
    prep = self._prepared[group.index]
    lanes_sharding = mesh_lib.lane_sharding(self.mesh)
    written: list[pd.DataFrame] = []
    pending = None
    for chunk in grid.chunks(group, size):
      t0 = time.perf_counter()
      keys = np.asarray(jax.vmap(jax.random.PRNGKey)(jnp.asarray(chunk.seeds, jnp.int32)))
      hp, keys = mesh_lib.to_global((chunk.hparams, keys), lanes_sharding)
      out = (compiled(hp, keys) if isinstance(compiled, StreamedRunner)
             else compiled(hp, keys, prep.data))  # asynchronous
      self.stats.run_seconds += time.perf_counter() - t0
      if pending is not None:
        written += self._write(group, prep, *pending)
      pending = (chunk, out)
    if pending is not None:
      written += self._write(group, prep, *pending)
    return written

  def _write(self, group: grid.Group, prep: _Prepared, chunk: grid.Chunk, out: Any
             ) -> list[pd.DataFrame]:
    """Waits for a chunk's outputs and writes the rows of this process's real lanes."""
    t0 = time.perf_counter()
    lanes, local = mesh_lib.local_lanes(out)
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
    if self.bar is not None:
      self.bar.update(chunk.size)
    return rows


def dataset_key(cfg: mlc.ConfigDict) -> tuple[Any, ...]:
  """What a loaded dataset depends on: the data section without the batch size and
  augmentation (those act per minibatch)."""
  return tuple(sorted((k, v) for k, v in cfg.data.items()
                      if k not in ("batch_size", "augment")))


def _free_bytes(workdir: str) -> int | None:
  try:
    return shutil.disk_usage(workdir).free
  except OSError:
    return None


def start(cfg: mlc.ConfigDict, workdir: str, resume: str, plan: grid.Plan,
          extra_meta: dict[str, Any] | None = None
          ) -> tuple[Any, list[str], pd.DataFrame, int]:
  """What both sweep modes do first, in every process: the mesh, the compile cache, the
  resume check, config.json (process 0; others only where their filesystem lacks it),
  and the runs already done (corrupt chunks set aside). Returns (mesh, differences from
  the saved config, done rows (run_id, regime) of this process, corrupt file count)."""
  mesh = mesh_lib.make_mesh(int(cfg.mesh.data))
  cache.configure(cache.cache_dir(str(cfg.sweep.compile_cache), workdir))
  os.makedirs(workdir, exist_ok=True)
  diff = check_resume(workdir, cfg, resume)
  meta = {**sweep_metadata(cfg, plan), **(extra_meta or {})}
  if diff:
    meta["resumed_with_differences"] = diff
  config_path = os.path.join(workdir, results.CONFIG_FILE)
  if jax.process_index() == 0:
    results.write_json(config_path, meta)
  mesh_lib.barrier("gradlab-config-written")
  if jax.process_index() != 0 and not os.path.exists(config_path):
    results.write_json(config_path, meta)  # this host does not share process 0's disk
  done, corrupt = results.recover(workdir)
  return mesh, diff, done, len(corrupt)


def done_mask(done: pd.DataFrame, n_ids: int) -> np.ndarray:
  """Which of run_ids 0..n_ids-1 are done in ANY process (the same answer everywhere)."""
  mask = np.zeros(n_ids, np.int8)
  ids = done["run_id"].to_numpy(dtype=np.int64)
  mask[ids[(ids >= 0) & (ids < n_ids)]] = 1
  return mesh_lib.gather_max(mask).astype(bool)


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
  return tqdm(total=total, initial=initial, unit="run", dynamic_ncols=True,
              disable=not enabled or jax.process_index() != 0)
