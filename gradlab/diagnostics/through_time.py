"""Gradients through time at init, read from a sweep's trajectories (numbers only).

A recurrent model's `probe_fn` (`gradlab.models.rnn.through_time_probe`) records
``grad_h_norm`` (T,) = ||dL/dh_t|| at every logged step; a sweep stores it in the
trajectories as ``probe_grad_h_norm`` (n_logs, T). `init_curves` reads the curve at init
(the first logged step), `normalized_median` normalizes it by its value at the last step
T and takes the median over runs, and `linear_line` is rho^(T-t): the curve of a LINEAR
RNN with an orthogonal recurrent matrix at radius rho, for which
dL/dh_t = (rho Q^T)^(T-t) dL/dh_T holds exactly. Pascanu, Mikolov & Bengio 2013 (Sec.
2.1, eq. 7): with a nonlinearity |f'| <= gamma the norm is bounded by
(gamma lambda_1)^(T-t), so a tanh network's curve lies at or below its rho line.
`gradlab.viz.through_time` draws them.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from gradlab.results import TRAJECTORIES_DIR


def init_curves(workdir: str) -> dict[int, np.ndarray]:
  """run_id -> ||dL/dh_t|| (T,) at the first logged step, for every run whose
  trajectory holds the probe."""
  out: dict[int, np.ndarray] = {}
  for path in sorted(glob.glob(os.path.join(workdir, TRAJECTORIES_DIR, "*.npz"))):
    with np.load(path, allow_pickle=False) as z:
      if "probe_grad_h_norm" not in z.files:
        continue
      curves = z["probe_grad_h_norm"]
      for lane, run_id in enumerate(z["run_id"]):
        out[int(run_id)] = np.asarray(curves[lane, 0], np.float64)
  return out


def normalized_median(curves: list[np.ndarray]) -> np.ndarray:
  """The median over runs of ||dL/dh_t|| / ||dL/dh_T|| (non-finite runs dropped). Runs
  of different lengths T are aligned at their last step (t counted back from T); the
  longer runs alone make up the earlier steps."""
  longest = max(len(c) for c in curves)
  kept = [c / c[-1] for c in curves]
  kept = [c for c in kept if np.all(np.isfinite(c))]
  if not kept:
    return np.full(longest, np.nan)
  if all(len(c) == longest for c in kept):
    return np.median(np.stack(kept), axis=0)
  stack = np.full((len(kept), longest), np.nan)
  for i, c in enumerate(kept):
    stack[i, longest - len(c):] = c
  return np.nanmedian(stack, axis=0)


def linear_line(rho: float, steps: int) -> np.ndarray:
  """rho^(T-t) for t = 1..T: the normalized curve of a linear orthogonal RNN."""
  return float(rho) ** (steps - 1 - np.arange(steps))
