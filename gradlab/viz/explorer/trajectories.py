"""Per-chunk trajectory scripts that index.html loads when a cell is clicked.

A browser opening index.html from disk (file://) may not `fetch` a file beside it, but
it may load a ``<script src>``. So each trajectories/chunk-*.npz of the sweep becomes
WORKDIR/explorer/traj/chunk-*.js, one call ``gradlabTrajectories(name, {run_id: {...}})``
holding every run of that chunk, and the page loads it the first time one of its runs is
clicked: the page itself stays small at any number of runs.

Each run keeps at most `MAX_POINTS` logged steps (evenly thinned, the first and last
always kept; a sweep logs every ``train.log_every`` steps already), numbers rounded to
4 significant digits, non-finite values as null (a gap in the curve, as in the PNGs).
A script is rewritten only when its npz is newer, so the live view after each chunk
converts only the new chunk.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from gradlab import results
from gradlab.viz.explorer.payload import json_number

SUBDIR = os.path.join("explorer", "traj")
MAX_POINTS = 200
# Arrays shown in a run's detail; the rest of the npz (iteration counts, flags) is not.
# Per-logged-step arrays are thinned; the sharpness estimates (a few steps) and the
# model probes (`probe_*`, e.g. over the time steps of an RNN) are kept whole.
STEP_CURVES: tuple[str, ...] = ("step", "loss", "grad_norm", "grad_norm_by_layer",
                                "update_ratio_by_layer")
WHOLE_CURVES: tuple[str, ...] = ("sharpness_step", "sharpness", "preconditioned_sharpness")
PROBE_PREFIX = "probe_"


def script_name(npz_path: str) -> str:
  """explorer/traj/<chunk>.js (relative to the workdir) for a trajectories npz."""
  return os.path.join(SUBDIR, os.path.basename(npz_path)[: -len(".npz")] + ".js")


def run_scripts(workdir: str, df: Any) -> list[str]:
  """Per row of results `df`, the script (relative path, '/' separated) that holds its
  trajectory, '' where its npz is absent."""
  keys = df[["group", "chunk"]].assign(process=df.get("process", 0)).astype(int)
  scripts: dict[tuple[int, int, int], str] = {}  # one look on disk per chunk, not per run
  for key in set(keys.itertuples(index=False, name=None)):
    npz = results.chunk_name(*key[:2], "npz", key[2])
    exists = os.path.exists(os.path.join(workdir, results.TRAJECTORIES_DIR, npz))
    scripts[key] = script_name(npz).replace(os.sep, "/") if exists else ""
  return [scripts[key] for key in keys.itertuples(index=False, name=None)]


def _thin(n: int) -> np.ndarray:
  if n <= MAX_POINTS:
    return np.arange(n)
  return np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))


def _rounded(a: np.ndarray) -> Any:
  """Nested lists of numbers (4 significant digits) with None for non-finite values, as
  the page's own numbers (`payload.json_number`)."""
  if a.ndim == 0:
    return json_number(a)
  return [_rounded(x) for x in a]


def run_curves(arrays: dict[str, np.ndarray], lane: int) -> dict[str, Any]:
  """The curves of one lane of a chunk's npz arrays, thinned (module docstring)."""
  keep = _thin(arrays["step"].shape[1]) if "step" in arrays else None
  out: dict[str, Any] = {}
  for key, a in arrays.items():
    x = np.asarray(a[lane], dtype=float) if key != "layer_names" else None
    if key in STEP_CURVES:
      out[key] = _rounded(x if keep is None else x[keep])
    elif key in WHOLE_CURVES or key.startswith(PROBE_PREFIX):
      out[key] = _rounded(x)
  if "layer_names" in arrays:
    out["layer_names"] = [str(n) for n in arrays["layer_names"]]
  return out


def write_scripts(workdir: str) -> list[str]:
  """Writes (or refreshes) one script per trajectories npz; returns those written."""
  written = []
  for npz in results.chunk_files(workdir, results.TRAJECTORIES_DIR):
    target = os.path.join(workdir, script_name(npz))
    if os.path.exists(target) and os.path.getmtime(target) >= os.path.getmtime(npz):
      continue
    try:
      with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError) as e:
      raise ValueError(f"trajectory file '{npz}' is unreadable ({type(e).__name__}: {e})"
                       ) from e
    runs = {str(int(r)): run_curves(arrays, lane)
            for lane, r in enumerate(arrays["run_id"])}
    name = os.path.basename(script_name(npz))
    body = json.dumps(runs, separators=(",", ":"), allow_nan=False)
    results.write_text(target, f"gradlabTrajectories({json.dumps(name)}, {body});\n")
    os.chmod(target, 0o644)
    written.append(target)
  return written
