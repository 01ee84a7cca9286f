"""The one place gradlab picks matplotlib's backend, and how a figure is saved.

Every module of `gradlab.viz` takes pyplot from here, so figures draw off-screen
(Agg) on a headless machine whatever imports them first.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 110

__all__ = ["DPI", "Figure", "plain_log_ticks", "plt", "save_figure"]


def plain_log_ticks(fig: Figure) -> None:
  """Log axes spanning less than a decade label their minor ticks "1.6", not
  "1.6 x 10^0" (matplotlib's default), on every axis and colorbar of `fig`."""
  from matplotlib.ticker import LogFormatter

  for ax in fig.axes:
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
      if scale == "log":
        axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def save_figure(fig: Figure, path: str) -> str:
  """Saves `fig` as a PNG at `path` (folders created), closes it, returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
  finally:
    plt.close(fig)
  return path
