"""The coordinate check's figure (`gradlab.coord_check`; Yang et al. 2022, Tensor
Programs V, Fig. 5 and App. D.1): a layer's output size against width, step by step.

One row of panels per parameterization, two columns: the activation RMS and its change
since init. In a panel, x is the width (log2), y the size (log), one colour per layer
(by depth: dark is the input side, light the readout) and one line per logged step,
faint at the first steps and solid at the last (with markers). A flat line is the pass.
Each title names the layers that grow or shrink with width at the last step (the
summary's `gradlab.coord_check.growth_note`). The numbers are `seed_means`'s; nothing
here computes them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

from gradlab.viz import canvas
from gradlab.viz.canvas import plt

PANELS = (("rms", "activation RMS"), ("delta_rms", "RMS of the change since init"))


def _plain(value: float, _: int) -> str:
  return f"{value:g}"


def _plain_235(value: float, _: int) -> str:
  """A minor log tick's label where its leading digit is 2, 3 or 5, else none."""
  lead = round(value / 10 ** np.floor(np.log10(value))) if value > 0 else 0
  return f"{value:g}" if lead in (2, 3, 5) else ""


def _panel(ax: object, means: pd.DataFrame, quantity: str, title: str) -> None:
  """One parameterization's `quantity`: a line per (layer, step) over widths."""
  steps = sorted(means["step"].unique())
  if quantity == "delta_rms":  # nothing has moved at step 0
    steps = [s for s in steps if s > 0]
  last = steps[-1] if steps else 0
  depths = sorted(means["depth"].unique())
  colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(depths), 2)))
  for depth in depths:
    layer_rows = means[means["depth"] == depth]
    name = str(layer_rows["layer"].iloc[0])
    for step in steps:
      rows = layer_rows[layer_rows["step"] == step].sort_values("width")
      final = step == last
      alpha = 1.0 if final else 0.12 + 0.5 * step / max(last, 1)
      ax.plot(rows["width"], rows[quantity], color=colours[depth], alpha=alpha,
              lw=2.0 if final else 0.9, marker="o" if final else None, ms=3.5,
              label=name if final else None)
  widths = sorted(means["width"].unique())
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xticks(widths)
  ax.set_xticklabels([str(w) for w in widths], fontsize=7)
  ax.xaxis.set_minor_locator(NullLocator())
  ax.yaxis.set_major_formatter(FuncFormatter(_plain))
  low, high = ax.get_ylim()  # label 2, 3 and 5 x 10^k where the axis spans ~a decade
  ax.yaxis.set_minor_formatter(FuncFormatter(_plain_235) if high < 30 * low
                               else NullFormatter())
  ax.set_xlabel("width")
  ax.set_title(title, fontsize=8)
  ax.grid(alpha=0.25, which="major")


def draw(means: pd.DataFrame, notes: Mapping[tuple[str, str], str], path: str,
         caption: str = "", order: Sequence[str] = ()) -> str:
  """coord_check.png at `path` from `gradlab.coord_check.seed_means` rows; `notes` maps
  (parameterization, quantity) to the title's note on growth (`growth_note`), `caption`
  goes above the panels (e.g. the model, optimizer and seeds); `order`: the
  parameterizations' rows, top to bottom (default: as they come in `means`)."""
  names = list(order) or list(dict.fromkeys(means["parameterization"]))
  fig, axes = plt.subplots(len(names), len(PANELS), figsize=(10.0, 3.3 * len(names)),
                           squeeze=False, sharex=True)
  last = int(means["step"].max())
  for i, name in enumerate(names):
    rows = means[means["parameterization"] == name]
    for j, (quantity, label) in enumerate(PANELS):
      note = notes.get((name, quantity), "")
      _panel(axes[i][j], rows, quantity,
             f"{name}: {label}\n" + textwrap.fill(f"step {last}: {note}", 64))
      axes[i][j].set_ylabel(label if j == 0 else "change since init", fontsize=8)
  axes[0][-1].legend(title=f"layer\n(faint: steps 0-{last - 1},\nsolid: step {last})",
                     fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                     ncol=1 if means["depth"].nunique() <= 14 else 2)
  if caption:
    fig.suptitle(caption, fontsize=9)
  fig.tight_layout()
  return canvas.save_figure(fig, path)
