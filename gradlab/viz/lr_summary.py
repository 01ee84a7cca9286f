"""stable_lr.png: per optimizer, the largest learning rate that trains and the largest
that neither explodes nor diverges, against sigma_w.

Small multiples: one panel per optimizer (the first part of a variant's name), the
other chain keys (remedies, clip, schedule) as line styles within it, one shared
y axis, so no line hides another. Two curves per variant, named for what they are: the
largest learning rate whose cell *trains* (wide pale solid; trained or catapult) and
the largest whose cell does not blow up (thin dashed on top; trained, catapult or
stalled), so where they coincide both show. Where no learning rate trains, a cross
sits at the bottom of the panel. The numbers are `gradlab.report.optimizers.stable_lr`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.panels import format_value, is_log_spaced
from gradlab.report.optimizers import SIGMA, stable_lr
from gradlab.viz import canvas
from gradlab.viz.canvas import plt

MAX_COLUMNS = 4
STYLES = ("o", "s", "^", "D", "v", "P")


def stable_lr_plot(df: pd.DataFrame, axes: Sequence[str], path: str) -> str:
  """stable_lr.png (module docstring) at `path`."""
  return canvas.save_figure(stable_lr_figure(df, axes), path)


def stable_lr_figure(df: pd.DataFrame, axes: Sequence[str]) -> canvas.Figure:
  """The figure of `stable_lr_plot`."""
  table = stable_lr(df, axes)
  x_key = SIGMA if SIGMA in axes else None
  heads = sorted({v.split(" | ")[0] for v in table["variant"]})
  tails = sorted({" | ".join(v.split(" | ")[1:]) for v in table["variant"]})
  n_cols = min(MAX_COLUMNS, len(heads))
  n_rows = math.ceil(len(heads) / n_cols)
  fig, grid = plt.subplots(n_rows, n_cols, figsize=(3.3 * n_cols + 1.6, 2.8 * n_rows + 0.8),
                           squeeze=False, sharex=True, sharey=True, layout="constrained")
  lrs = sorted(df["optimizer.learning_rate"].unique())
  bottom = lrs[0] / 2
  for k, ax in enumerate(grid.ravel()):
    if k >= len(heads):
      ax.remove()
      continue
    head = heads[k]
    for variant, g in table.groupby("variant", sort=True):
      name, _, tail = variant.partition(" | ")
      if name != head:
        continue
      marker = STYLES[tails.index(tail) % len(STYLES)]
      xs = g[x_key].to_numpy(float) if x_key else np.zeros(len(g))
      label = f" ({tail or 'as is'})" if len(tails) > 1 else ""
      trains = g["largest_trained_lr"].to_numpy(float)
      safe = g["largest_stable_lr"].to_numpy(float)
      # The "trains" curve is wide and pale beneath the thin dashed one, so where the
      # two coincide (every stable cell trains) both stay visible.
      ax.plot(xs, trains, "-", marker=marker, ms=7, lw=4.0, alpha=0.45, color="tab:green",
              zorder=2, label=f"trains{label}")
      ax.plot(xs, safe, "--", marker=marker, ms=4, lw=1.2, color="tab:red", mfc="none",
              zorder=3, label=f"does not blow up{label}")
      none = ~np.isfinite(trains)
      if none.any():
        ax.plot(xs[none], np.full(none.sum(), bottom), "x", color="tab:green", ms=7,
                label=f"nothing trains{label}")
    ax.set_yscale("log")
    ax.set_ylim(bottom / 1.6, lrs[-1] * 1.6)
    if x_key:
      values = sorted(df[SIGMA].unique())
      if is_log_spaced(values):
        ax.set_xscale("log")
      ax.set_xticks(values, [format_value(v) for v in values], fontsize=7)
      ax.minorticks_off()
    ax.set_title(head, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if k % n_cols == 0:
      ax.set_ylabel("learning rate")
    if k >= len(heads) - n_cols:
      ax.set_xlabel(x_key or "")
  handles, labels = [], []
  for ax in fig.axes:
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
      if lab not in labels:
        handles.append(h)
        labels.append(lab)
  fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)),
             fontsize=7, frameon=False)
  fig.suptitle("largest learning rate that trains (solid) / does not blow up (dashed); "
               "x: none trains", fontsize=9)
  return fig
