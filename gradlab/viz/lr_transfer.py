"""lr_transfer.png: final loss against learning rate, one curve per width, one panel per
parameterization (rows) and optimizer variant (columns); the numbers are
`gradlab.report.lr_transfer`'s. A star marks each curve's best learning rate; a learning
rate whose runs diverged is drawn as a cross at the top of the panel."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.report.lr_transfer import (
  LR,
  PARAMETERIZATION,
  WIDTH,
  applies,
  best_lr,
  curve_keys,
  loss_curves,
)
from gradlab.viz import canvas
from gradlab.viz.canvas import plt


def _label(keys: Sequence[str], key: tuple) -> str:
  return ", ".join(str(v) for k, v in zip(keys, key, strict=True)) or "all runs"


def draw(workdir: str, df: pd.DataFrame, axes: Sequence[str]) -> dict[str, str]:
  """{'lr transfer': path} for a sweep with width and learning-rate axes; {} otherwise."""
  if not applies(axes):
    return {}
  curves = loss_curves(df, axes)
  best = best_lr(curves, axes)
  keys = curve_keys(axes)
  col_keys = [k for k in keys if k != PARAMETERIZATION]
  rows = sorted(curves[PARAMETERIZATION].unique())
  cols = (sorted({tuple(r) for r in curves[col_keys].itertuples(index=False)})
          if col_keys else [()])
  widths = sorted(curves[WIDTH].unique())
  colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(widths)))
  finite = curves["median_final_loss"][np.isfinite(curves["median_final_loss"])]
  top = float(finite.quantile(0.98)) * 1.15 if len(finite) else 1.0
  low = float(finite.min()) * 0.9 if len(finite) else 0.0
  fig, grid = plt.subplots(len(rows), len(cols), figsize=(3.6 * len(cols) + 0.6,
                                                          2.9 * len(rows) + 0.4),
                           squeeze=False, sharex=True, sharey=True)
  for i, param in enumerate(rows):
    for j, col in enumerate(cols):
      ax = grid[i][j]
      sel = curves[PARAMETERIZATION] == param
      for k, v in zip(col_keys, col, strict=True):
        sel &= curves[k] == v
      for width, color in zip(widths, colors, strict=True):
        c = curves[sel & (curves[WIDTH] == width)].sort_values(LR)
        if c.empty:
          continue
        y = c["median_final_loss"].to_numpy(float)
        ok = np.isfinite(y)
        ax.plot(c[LR][ok], np.minimum(y[ok], top), "o-", ms=3, color=color,
                label=f"{int(width)}")
        ax.plot(c[LR][~ok], np.full((~ok).sum(), top), "x", color=color, ms=5)
        b = best[(best[PARAMETERIZATION] == param) & (best[WIDTH] == width)]
        for k, v in zip(col_keys, col, strict=True):
          b = b[b[k] == v]
        if len(b) and np.isfinite(b["best_lr"].iloc[0]):
          ax.plot(b["best_lr"], np.minimum(b["best_loss"], top), "*", ms=11, color=color,
                  markeredgecolor="black", markeredgewidth=0.5)
      ax.set_xscale("log", base=2)
      ax.set_ylim(low, top * 1.03)
      ax.set_title(_label(keys, (param, *col)), fontsize=8)
      if i == len(rows) - 1:
        ax.set_xlabel("learning rate")
      if j == 0:
        ax.set_ylabel("final loss (median)")
  grid[0][-1].legend(title="width", fontsize=7, title_fontsize=7, loc="upper left",
                     bbox_to_anchor=(1.02, 1.0))
  fig.suptitle("learning-rate transfer: * best lr per width, x diverged", fontsize=9)
  fig.tight_layout()
  return {"lr transfer": canvas.save_figure(fig, os.path.join(workdir, "lr_transfer.png"))}
