"""stable_lr.png: the largest stable learning rate against sigma_w, one line per variant.

The numbers are `gradlab.report.optimizers.stable_lr` (a variant is one combination of
the swept optimizer chain keys; a cell is stable when it neither exploded nor diverged).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.panels import format_value, is_log_spaced
from gradlab.report.optimizers import SIGMA, stable_lr
from gradlab.viz import canvas
from gradlab.viz.canvas import plt


def stable_lr_plot(df: pd.DataFrame, axes: Sequence[str], path: str) -> str:
  """The largest stable learning rate against sigma_w, one line per variant."""
  table = stable_lr(df, axes)
  fig, ax = plt.subplots(figsize=(7.2, 4.8))
  x_key = SIGMA if SIGMA in axes else None
  variants = sorted(table["variant"].unique())
  heads = sorted({v.split(" | ")[0] for v in variants})
  tails = sorted({" | ".join(v.split(" | ")[1:]) for v in variants})
  colors = plt.get_cmap("tab10" if len(heads) <= 10 else "tab20")
  styles = ["-", "--", ":", "-."]
  for variant, g in table.groupby("variant", sort=True):
    head, _, tail = variant.partition(" | ")
    xs = g[x_key].to_numpy(float) if x_key else np.zeros(len(g))
    ax.plot(xs, g["largest_stable_lr"].to_numpy(float), marker="o", label=variant,
            color=colors(heads.index(head) % colors.N),
            linestyle=styles[tails.index(tail) % len(styles)])
  ax.set_yscale("log")
  if x_key:
    values = sorted(df[SIGMA].unique())
    if is_log_spaced(values):
      ax.set_xscale("log")
    ax.set_xticks(values, [format_value(v) for v in values])
    ax.minorticks_off()
  ax.set_xlabel(x_key or "")
  ax.set_ylabel("largest stable learning rate")
  ax.set_title("largest stable learning rate (missing: none stable)")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), handlelength=3.5)
  return canvas.save_figure(fig, path)
