"""Gradients through time: ||dL/dh_t|| against t, one line per spectral radius.

Draws the init-time curves of `gradlab.diagnostics.through_time` (||dL/dh_t|| at the
first logged step, normalized by its value at the last step T) against t on a log
scale, one line per ``init.spectral_radius`` (median over the runs that share it: at
init they differ only in their seed), beside the dashed line rho^(T-t) of a LINEAR RNN
with an orthogonal recurrent matrix at radius rho (Pascanu, Mikolov & Bengio 2013,
Sec. 2.1, eq. 7: a tanh network's curve lies at or below its rho line).

One panel per combination of the other static sequence axes that the sweep varies
(model.name, data.seq_len, model.activation, init.recurrent_family).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from gradlab.diagnostics.through_time import init_curves, linear_line, normalized_median
from gradlab.panels import format_value
from gradlab.viz import canvas
from gradlab.viz.canvas import Figure, plt

RHO_KEY = "init.spectral_radius"
PANEL_KEYS = ("data.name", "model.name", "data.seq_len", "model.activation",
              "init.recurrent_family")
FILENAME = "through_time.png"


def through_time_figure(df: pd.DataFrame, curves: dict[int, np.ndarray]) -> Figure:
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
      label = f"rho={format_value(rho)}" if np.isfinite(rho) else "median over runs"
      ax.semilogy(t, curve, color=cmap(i), label=label)
      if np.isfinite(rho):
        ax.semilogy(t, linear_line(rho, len(curve)), color=cmap(i), ls="--", lw=0.8)
    ax.set_title(", ".join(f"{k}={format_value(v)}" for k, v in zip(
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
  path = canvas.save_figure(through_time_figure(df, curves), os.path.join(workdir, FILENAME))
  return {"through time": path}
