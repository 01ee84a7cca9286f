"""The results store: atomic chunk files under WORKDIR, loaded back as one DataFrame.

Layout of a workdir::

    config.json                                 resolved config, axes, versions, device
    results/chunk-g000-r000000-p000.parquet     one row per run of that file
    trajectories/chunk-g000-r000000-p000.npz    per-logged-step arrays of the same runs

A file holds the runs of one chunk of group ``g`` that process ``p`` computed; ``r`` is
the first run_id in it. The rows carry ``group``, ``chunk`` (that first run_id) and
``process``, which name the file and so its trajectories. Because a sweep only ever
computes runs that are not done yet, a new file never has the name of a finished one:
a rerun adds files, it never overwrites.

Every file is written to a temporary name (starting with '.tmp-') and renamed, and the
trajectories before the rows, so a killed sweep leaves either whole files or temporary
ones that `load` ignores; a run counts as done once its parquet file exists.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from gradlab.registry import ConfigError

log = logging.getLogger("gradlab")

RESULTS_DIR = "results"
TRAJECTORIES_DIR = "trajectories"
CONFIG_FILE = "config.json"
CORRUPT_SUFFIX = ".corrupt"
_CHUNK_RE = re.compile(
  r"^chunk-g(\d{3,})-(?:r(\d{6,})-p(\d{3,})|c(\d{5,}))\.(parquet|npz)$")


def chunk_name(group: int, chunk: int, ext: str, process: int = 0) -> str:
  """File name of the runs of `group` starting at run_id `chunk` written by `process`."""
  return f"chunk-g{group:03d}-r{chunk:06d}-p{process:03d}.{ext}"


def _atomic_write(path: str, write: Callable[[str], None]) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path: str, obj: Any) -> None:
  def write(tmp: str) -> None:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=False, default=str)

  _atomic_write(path, write)


def write_text(path: str, text: str) -> None:
  def write(tmp: str) -> None:
    with open(tmp, "w") as f:
      f.write(text)

  _atomic_write(path, write)


def write_csv(path: str, table: pd.DataFrame) -> None:
  _atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def read_config(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise ConfigError(f"'{workdir}' holds no {CONFIG_FILE}: not a gradlab sweep folder")
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ConfigError(f"'{path}' is not valid JSON ({e}); the folder is corrupt") from e


def check_workdir(workdir: str) -> None:
  """Refuses, before anything is computed or written, a workdir that is a file (or lies
  under one) or that this process may not write (checked with `os.access`, which also
  sees read-only file systems): the folder itself when it exists, else the nearest
  existing folder above it, where it would be made. Writes nothing."""
  path = os.path.abspath(workdir)
  while not os.path.isdir(path):
    if os.path.lexists(path):
      what = "is a file" if path == os.path.abspath(workdir) else f"lies under the file '{path}'"
      raise ConfigError(f"--workdir '{workdir}' {what}; give a folder (new, or a previous "
                        f"run's to resume it)")
    path = os.path.dirname(path)
  if not os.access(path, os.W_OK | os.X_OK):
    raise ConfigError(f"--workdir '{workdir}' cannot be written: no write permission on "
                      f"'{path}'; give a folder you may write to")


def write_chunk(workdir: str, group: int, chunk: int, rows: pd.DataFrame,
                trajectories: dict[str, np.ndarray] | None, process: int = 0) -> None:
  """Writes the trajectories (unless None) first, then the rows: the runs count as done
  once the parquet file exists, and then their trajectories exist too."""
  if trajectories is not None:
    traj_path = os.path.join(workdir, TRAJECTORIES_DIR, chunk_name(group, chunk, "npz", process))

    def write_npz(tmp: str) -> None:
      with open(tmp, "wb") as f:
        np.savez_compressed(f, **trajectories)

    _atomic_write(traj_path, write_npz)
  rows_path = os.path.join(workdir, RESULTS_DIR, chunk_name(group, chunk, "parquet", process))
  _atomic_write(rows_path, lambda tmp: rows.to_parquet(tmp, index=False))


def chunk_files(workdir: str, sub: str = RESULTS_DIR) -> list[str]:
  folder = os.path.join(workdir, sub)
  if not os.path.isdir(folder):
    return []
  return sorted(os.path.join(folder, n) for n in os.listdir(folder) if _CHUNK_RE.match(n))


def _read_rows(path: str) -> pd.DataFrame:
  try:
    return pd.read_parquet(path)
  except Exception as e:  # noqa: BLE001 - any parquet failure means a corrupt chunk
    raise ConfigError(f"results chunk '{path}' is unreadable ({type(e).__name__}: {e})") from e


def load(workdir: str) -> pd.DataFrame:
  """All finished runs of a sweep, one row per run, sorted by run_id; the files of every
  process are merged.

  Temporary files of an interrupted chunk and files set aside as corrupt are ignored. A
  chunk file that cannot be read raises a ConfigError naming it (never a silent drop);
  rerunning the sweep into the workdir sets it aside and recomputes its runs. Two rows
  with one run_id (which one writer per workdir and resume by point identity never
  produce) raise a ConfigError naming the files, instead of being counted twice.
  """
  paths = chunk_files(workdir)
  frames = [_read_rows(path) for path in paths]
  if not frames:
    return pd.DataFrame()
  df = pd.concat(frames, ignore_index=True)
  check_unique_runs(df, [os.path.basename(p) for p, f in zip(paths, frames, strict=True)
                         for _ in range(len(f))], workdir)
  return df.sort_values("run_id", kind="stable").reset_index(drop=True)


def check_unique_runs(df: pd.DataFrame, sources: list[str], workdir: str) -> None:
  """Raises ConfigError when a run_id occurs in more than one row of `df` (row i came
  from file `sources[i]`)."""
  if "run_id" not in df.columns:
    return
  dup = df["run_id"].duplicated(keep=False).to_numpy()
  if not dup.any():
    return
  ids = sorted({int(i) for i in df["run_id"].to_numpy()[dup]})
  files = sorted({sources[i] for i in np.flatnonzero(dup)})
  raise ConfigError(
    f"'{workdir}' holds {len(ids)} run_id(s) twice (e.g. {ids[:5]}) in {', '.join(files[:4])}"
    f"{' ...' if len(files) > 4 else ''}: two sweeps wrote into it; move the duplicate files "
    f"out of results/ to keep one copy")


def _trajectory_path(workdir: str, row: pd.Series) -> str:
  group, chunk = int(row["group"]), int(row["chunk"])
  process = int(row["process"]) if "process" in row.index else 0
  return os.path.join(workdir, TRAJECTORIES_DIR, chunk_name(group, chunk, "npz", process))


def load_trajectory(workdir: str, run_id: int) -> dict[str, np.ndarray]:
  """The per-logged-step arrays of one run (loss, grad_norm, grad_norm_by_layer, ...)."""
  df = load(workdir)
  match = df[df["run_id"] == run_id] if len(df) else df
  if match.empty:
    raise KeyError(f"run_id {run_id} is not in the results of '{workdir}'")
  path = _trajectory_path(workdir, match.iloc[0])
  if not os.path.exists(path):
    raise ConfigError(f"run {run_id} has no trajectory file ('{path}' is missing; a sweep "
                      f"with sweep.keep_trajectories=False writes result rows only)")
  try:
    with np.load(path, allow_pickle=False) as z:
      lane = int(np.flatnonzero(z["run_id"] == run_id)[0])
      return {k: (z[k] if k == "layer_names" else z[k][lane]) for k in z.files
              if k != "run_id"}
  except _NPZ_ERRORS as e:
    raise ConfigError(f"trajectory file '{path}' is corrupt ({type(e).__name__}: {e}); "
                      f"rerunning the sweep into '{workdir}' sets it aside and recomputes "
                      f"its runs") from e


# What reading a damaged npz raises: a bad zip directory, a member whose bytes fail
# their CRC or do not inflate, a truncated array.
_NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, IndexError, zipfile.BadZipFile,
               zlib.error)


def trajectories_problem(path: str) -> str:
  """'' when the npz at `path` is missing (summaries-only sweeps) or whole; else what is
  wrong. Every member is read in full, so damaged bytes inside any one of them (its
  CRC-32 is checked when it is read to the end) are found, not only a broken directory."""
  if not os.path.exists(path):
    return ""
  try:
    with zipfile.ZipFile(path) as archive:
      bad = archive.testzip()  # reads every member to its end: checks each CRC-32
    if bad is not None:
      return f"its trajectory file's member '{bad}' is damaged (bad CRC-32)"
    with np.load(path, allow_pickle=False) as z:
      for name in z.files:
        z[name]
      if "run_id" not in z.files:
        return "its trajectory file holds no run_id"
  except _NPZ_ERRORS as e:
    return f"its trajectory file is unreadable ({type(e).__name__}: {e})"
  return ""


def _set_aside(path: str) -> str | None:
  """Renames `path` to `path.corrupt` (or `path.corrupt-2`, -3, ...: an earlier corrupt
  copy is never overwritten); the new name, or None when another process already moved
  it."""
  for n in range(1, 10_000):
    target = path + CORRUPT_SUFFIX + ("" if n == 1 else f"-{n}")
    try:
      os.link(path, target)  # fails if the target exists: never overwrites
    except FileExistsError:
      continue
    except FileNotFoundError:
      return None
    except OSError:  # a filesystem without hard links: check, then rename
      if os.path.exists(target):
        continue
      try:
        os.replace(path, target)
      except FileNotFoundError:
        return None
      return target
    try:
      os.remove(path)
    except FileNotFoundError:  # another process set it aside at the same moment
      os.remove(target)
      return None
    return target
  raise ConfigError(f"too many corrupt copies of '{path}'")


def recover(workdir: str, columns: tuple[str, ...] = ("run_id", "regime")
            ) -> tuple[pd.DataFrame, list[str]]:
  """The finished runs of a workdir for a resume (every column of their rows; `columns`
  must be among them), and the chunk files found corrupt.

  Reads every chunk file this process can see, and every member of its trajectory file.
  A parquet file that cannot be read or lacks a required column, or whose trajectory
  file exists but is damaged anywhere, is reported (one warning naming it) and set aside
  with both its files renamed to ``*.corrupt`` (numbered ``*.corrupt-2``, ... when an
  earlier copy is there: never overwritten; `load` ignores them), so its runs count as
  not done and the sweep recomputes them: nothing is silently dropped.
  """
  frames, corrupt = [], []
  for path in chunk_files(workdir):
    traj = os.path.join(workdir, TRAJECTORIES_DIR,
                        os.path.basename(path)[: -len(".parquet")] + ".npz")
    try:
      rows = _read_rows(path)
      missing = [c for c in columns if c not in rows.columns]
      problem = trajectories_problem(traj) or (
        f"it lacks column(s) {missing}" if missing else "")
    except ConfigError as e:
      cause = e.__cause__
      problem = f"unreadable: {type(cause).__name__}: {cause}"
    if not problem:
      frames.append(rows)
      continue
    if not os.path.exists(path):  # another process set it aside while this one read it
      continue
    moved = _set_aside(path)
    if os.path.exists(traj):
      _set_aside(traj)
    if moved:
      corrupt.append(path)
      log.warning("corrupt results chunk '%s' (%s): set aside as '%s'; its runs will be "
                  "recomputed", path, " ".join(problem.split()), os.path.basename(moved))
  if not frames:
    return pd.DataFrame({c: [] for c in columns}), corrupt
  return pd.concat(frames, ignore_index=True), corrupt
