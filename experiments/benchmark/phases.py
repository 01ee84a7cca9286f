"""The timed phases of one preset that go through gradlab's own sweep engine."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import ml_collections as mlc

from experiments.benchmark.timing import LoopTiming, peak_rss_mb
from gradlab import results
from gradlab.sweep import run_sweep


def time_engine(cfg: mlc.ConfigDict, out_dir: str, tag: str, keep: bool = False
                ) -> tuple[LoopTiming, dict[str, Any]]:
  """Runs the grid of `cfg` through `run_sweep` into a fresh folder under `out_dir`.

  Everything a sweep does is timed: planning, data, compiling, running, labelling regimes
  and writing results. Returns the timing and what the sweep wrote (rows, compiles); the
  folder is removed afterwards unless `keep`.
  """
  workdir = tempfile.mkdtemp(prefix=f"sweep-{tag}-", dir=out_dir)
  try:
    stats = run_sweep(cfg, workdir, progress=False)
    rows = results.load(workdir)
    n_chunks = len(results.chunk_files(workdir))
    n_traj = len(results.chunk_files(workdir, results.TRAJECTORIES_DIR))
  finally:
    if not keep:
      shutil.rmtree(workdir, ignore_errors=True)
  other_s = stats.wall_seconds - stats.compile_seconds - stats.run_seconds
  probes = "on" if cfg.train.layer_probes else "off"
  fused = ", optimizers fused" if cfg.sweep.fuse_optimizers else ""
  timing = LoopTiming(f"gradlab (layer probes {probes}{fused})", stats.n_points, stats.n_points,
                      int(cfg.train.steps), stats.compile_seconds, stats.run_seconds,
                      other_s=other_s, peak_rss_mb=peak_rss_mb(),
                      note=f"{stats.n_compiles} compile(s), {stats.n_groups} group(s), "
                           f"{n_chunks} chunk(s)")
  written = {"rows_written": int(len(rows)), "chunks": n_chunks, "trajectory_files": n_traj,
             "n_compiles": stats.n_compiles, "n_groups": stats.n_groups,
             "n_devices": stats.n_devices, "n_relocations": stats.n_relocations,
             "relocate_s": stats.relocate_seconds,
             "fuse_optimizers": bool(cfg.sweep.fuse_optimizers),
             "regimes": {str(k): int(v) for k, v in rows["regime"].value_counts().items()}
             if len(rows) else {},
             "workdir": workdir if keep else None}
  return timing, written
