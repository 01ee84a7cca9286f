"""Gradients through time: ||dL/dh_t|| against t, one line per spectral radius.

A recurrent model's `probe_fn` (`gradlab.models.rnn.through_time_probe`) records
``grad_h_norm`` (T,) = ||dL/dh_t|| at every logged step; a sweep stores it in the
trajectories as ``probe_grad_h_norm`` (n_logs, T). This module reads the curve at init
(the first logged step), normalizes it by its value at the last step T, and draws it
against t on a log scale, one line per ``init.spectral_radius`` (median over the runs
that share it: at init they differ only in their seed), beside the dashed line
rho^(T-t) of a LINEAR RNN with an orthogonal recurrent matrix at radius rho, for which
dL/dh_t = (rho Q^T)^(T-t) dL/dh_T holds exactly. Pascanu, Mikolov & Bengio 2013 (Sec.
2.1, eq. 7): with a nonlinearity |f'| <= gamma the norm is bounded by
(gamma lambda_1)^(T-t), so a tanh network's curve lies at or below its rho line.

One panel per combination of the other static sequence axes that the sweep varies
(model.name, data.seq_len, model.activation, init.recurrent_family).
"""

from __future__ import annotations

import glob
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gradlab import plots  # noqa: E402
from gradlab.results import TRAJECTORIES_DIR  # noqa: E402

RHO_KEY = "init.spectral_radius"
PANEL_KEYS = ("model.name", "data.seq_len", "model.activation", "init.recurrent_family")
FILENAME = "through_time.png"


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
  """The median over runs of ||dL/dh_t|| / ||dL/dh_T|| (non-finite runs dropped)."""
  stack = np.stack([c / c[-1] for c in curves])
  stack = stack[np.all(np.isfinite(stack), axis=1)]
  return np.median(stack, axis=0) if len(stack) else np.full(curves[0].shape, np.nan)


def linear_line(rho: float, steps: int) -> np.ndarray:
  """rho^(T-t) for t = 1..T: the normalized curve of a linear orthogonal RNN."""
  return float(rho) ** (steps - 1 - np.arange(steps))


def through_time_figure(df: pd.DataFrame, curves: dict[int, np.ndarray]) -> plt.Figure:
  """The figure (see module docstring) from a sweep's rows and its `init_curves`."""
  df = df[df["run_id"].isin(list(curves))]
  panel_keys = [k for k in PANEL_KEYS if k in df.columns and df[k].nunique() > 1]
  panels = list(df.groupby(panel_keys, sort=True)) if panel_keys else [((), df)]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False,
                           layout="constrained")
  rhos = sorted(df[RHO_KEY].unique()) if RHO_KEY in df.columns else [np.nan]
  cmap = plt.get_cmap("coolwarm", max(len(rhos), 2))
  for ax, (key, rows) in zip(axes[0], panels, strict=True):
    key = key if isinstance(key, tuple) else (key,)
    for i, rho in enumerate(rhos):
      sel = rows[rows[RHO_KEY] == rho] if RHO_KEY in rows.columns else rows
      if sel.empty:
        continue
      curve = normalized_median([curves[int(r)] for r in sel["run_id"]])
      t = np.arange(1, len(curve) + 1)
      ax.semilogy(t, curve, color=cmap(i), label=f"rho={plots.format_value(rho)}")
      if np.isfinite(rho):
        ax.semilogy(t, linear_line(rho, len(curve)), color=cmap(i), ls="--", lw=0.8)
    ax.set_title(", ".join(f"{k}={plots.format_value(v)}" for k, v in zip(
      panel_keys, key, strict=True)) or "all", fontsize=9)
    ax.set_xlabel("t (step)")
    ax.set_ylabel("||dL/dh_t|| / ||dL/dh_T|| at init")
  axes[0][-1].plot([], [], color="0.3", ls="--", lw=0.8, label="rho^(T-t) (linear)")
  fig.legend(*axes[0][-1].get_legend_handles_labels(), loc="outside right upper",
             frameon=False, fontsize=8)
  fig.suptitle("gradients through time at init (Pascanu et al. 2013)")
  return fig


def draw(workdir: str, df: pd.DataFrame) -> dict[str, str]:
  """Writes WORKDIR/through_time.png when the sweep recorded the through-time probe;
  returns {'through time': path}, or {} when it did not."""
  curves = init_curves(workdir)
  if not curves:
    return {}
  path = plots.save_figure(through_time_figure(df, curves), os.path.join(workdir, FILENAME))
  return {"through time": path}
