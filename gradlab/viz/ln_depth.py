"""Pre-LN vs Post-LN at initialization: figures of the last layer's gradient norm against
depth (Xiong et al. 2020, Theorem 1; the numbers are `gradlab.diagnostics.ln_depth`'s).

- `draw` plots it from a sweep with ``model.depth`` and ``model.ln_position`` axes
  (configs/transformer_ln.py): the median over the runs of a (position, depth) cell of
  each run's step-0 gradient norm of its last block, with the fitted log-log slope per
  position in the legend.
- `draw_direct` plots `last_layer_grad_norms` (the theorem's setting).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import NullLocator

from gradlab.diagnostics.ln_depth import (
  DEPTH_AXIS,
  LN_AXIS,
  applies,
  init_grad_by_depth,
  last_layer_grad_norms,
  loglog_slope,
)
from gradlab.viz import canvas
from gradlab.viz.canvas import plt


def _depth_axes(ax: Any, depths: Sequence[float]) -> None:
  """Log-log axes with the depths themselves as x ticks (2, 4, 8, not 2^1, 2^2, 2^3)
  and plain minor labels on a y axis under a decade."""
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  values = sorted({int(d) for d in depths})
  ax.set_xticks(values, [str(d) for d in values])
  ax.xaxis.set_minor_locator(NullLocator())
  ax.set_xlabel("depth L (blocks)")
  canvas.plain_log_ticks(ax.figure)


def draw(workdir: str, df: pd.DataFrame, axes: Sequence[str]) -> dict[str, str]:
  """{'init grad by depth': path} of ln_depth.png for a sweep with depth and ln_position
  axes (and trajectories); {} otherwise."""
  if not applies(axes):
    return {}
  table = init_grad_by_depth(workdir, df)
  if table.empty:
    return {}
  cells = table.groupby([LN_AXIS, DEPTH_AXIS])["init_last_block_grad_norm"].median()
  fig, ax = plt.subplots(figsize=(5.0, 3.8))
  for position, series in cells.groupby(level=0):
    depths = series.index.get_level_values(1).to_numpy(float)
    values = series.to_numpy(float)
    ok = np.isfinite(values) & (values > 0)
    label = str(position)
    if ok.sum() >= 2:
      label += f" (slope {loglog_slope(depths[ok], values[ok]):+.2f})"
    ax.plot(depths, values, "o-", label=label)
  _depth_axes(ax, cells.index.get_level_values(1))
  ax.set_ylabel("||grad|| of the last block at init")
  ax.set_title("step 0, loss over all positions (Xiong et al. 2020, Thm 1:\n"
               "per position Post-LN ~ L^0, Pre-LN ~ L^-1/2)", fontsize=8)
  ax.legend(title="model.ln_position", fontsize=8)
  fig.tight_layout()
  return {"init grad by depth": canvas.save_figure(fig, os.path.join(workdir, "ln_depth.png"))}


def draw_direct(path: str, depths: Sequence[int] = (2, 4, 8, 16, 32), seeds: int = 16) -> str:
  """ln_depth_direct.png: `last_layer_grad_norms` (the theorem's setting: the last FFN
  kernel, one position's loss) for Pre-LN and Post-LN against depth, with fitted slopes
  and the L^-1/2 reference. About 20 s on a 2-core CPU::

      python -c "from gradlab.viz import ln_depth; ln_depth.draw_direct('ln_depth_direct.png')"
  """
  fig, ax = plt.subplots(figsize=(5.0, 3.8))
  for position in ("post", "pre"):
    values = last_layer_grad_norms(depths, position, seeds=seeds)
    ax.plot(depths, values, "o-",
            label=f"{position} (slope {loglog_slope(depths, values):+.2f})")
    if position == "pre":
      ref = values[0] * (np.asarray(depths, float) / depths[0]) ** -0.5
      ax.plot(depths, ref, ":", color="grey", label="L^-1/2")
  _depth_axes(ax, depths)
  ax.set_ylabel("||dL/dW|| of the last mlp/down at init")
  ax.set_title(f"Xiong et al. 2020, Thm 1 (mean of {seeds} inits)", fontsize=9)
  ax.legend(title="model.ln_position", fontsize=8)
  fig.tight_layout()
  return canvas.save_figure(fig, path)
