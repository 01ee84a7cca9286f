"""The results store: atomic chunk files under WORKDIR, loaded back as one DataFrame.

Layout of a workdir::

    config.json                          resolved config, axes, versions, device, commit
    results/chunk-g000-c00000.parquet    one row per run of that chunk
    trajectories/chunk-g000-c00000.npz   per-logged-step arrays of the same runs

Every file is written to a temporary name (starting with '.tmp-') and renamed, so a
killed sweep leaves either a whole chunk or a temporary file that `load` ignores.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from gradlab.registry import ConfigError

RESULTS_DIR = "results"
TRAJECTORIES_DIR = "trajectories"
CONFIG_FILE = "config.json"
_CHUNK_RE = re.compile(r"^chunk-g(\d{3,})-c(\d{5,})\.(parquet|npz)$")


def chunk_name(group: int, chunk: int, ext: str) -> str:
  return f"chunk-g{group:03d}-c{chunk:05d}.{ext}"


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


def read_config(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise ConfigError(f"'{workdir}' holds no {CONFIG_FILE}: not a gradlab sweep folder")
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ConfigError(f"'{path}' is not valid JSON ({e}); the folder is corrupt") from e


def write_chunk(workdir: str, group: int, chunk: int, rows: pd.DataFrame,
                trajectories: dict[str, np.ndarray]) -> None:
  """Writes the trajectories first, then the rows: a chunk counts as done once its
  parquet file exists, and then its trajectories exist too."""
  traj_path = os.path.join(workdir, TRAJECTORIES_DIR, chunk_name(group, chunk, "npz"))

  def write_npz(tmp: str) -> None:
    with open(tmp, "wb") as f:
      np.savez_compressed(f, **trajectories)

  _atomic_write(traj_path, write_npz)
  rows_path = os.path.join(workdir, RESULTS_DIR, chunk_name(group, chunk, "parquet"))
  _atomic_write(rows_path, lambda tmp: rows.to_parquet(tmp, index=False))


def chunk_files(workdir: str, sub: str = RESULTS_DIR) -> list[str]:
  folder = os.path.join(workdir, sub)
  if not os.path.isdir(folder):
    return []
  return sorted(os.path.join(folder, n) for n in os.listdir(folder) if _CHUNK_RE.match(n))


def load(workdir: str) -> pd.DataFrame:
  """All finished runs of a sweep, one row per run, sorted by run_id.

  Temporary files of an interrupted chunk are ignored. A chunk file that cannot be
  read raises a ConfigError naming it (never a silent drop).
  """
  frames = []
  for path in chunk_files(workdir):
    try:
      frames.append(pd.read_parquet(path))
    except Exception as e:  # noqa: BLE001 - any parquet failure means a corrupt chunk
      raise ConfigError(f"results chunk '{path}' is unreadable ({type(e).__name__}: {e})") from e
  if not frames:
    return pd.DataFrame()
  df = pd.concat(frames, ignore_index=True)
  return df.sort_values("run_id", kind="stable").reset_index(drop=True)


def load_trajectory(workdir: str, run_id: int) -> dict[str, np.ndarray]:
  """The per-logged-step arrays of one run (loss, grad_norm, grad_norm_by_layer, ...)."""
  df = load(workdir)
  match = df[df["run_id"] == run_id]
  if match.empty:
    raise KeyError(f"run_id {run_id} is not in the results of '{workdir}'")
  row = match.iloc[0]
  path = os.path.join(workdir, TRAJECTORIES_DIR,
                      chunk_name(int(row["group"]), int(row["chunk"]), "npz"))
  with np.load(path, allow_pickle=False) as z:
    lane = int(np.flatnonzero(z["run_id"] == run_id)[0])
    return {k: (z[k] if k == "layer_names" else z[k][lane]) for k in z.files if k != "run_id"}
