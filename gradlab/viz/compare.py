"""compare.png: two sweeps' regime maps side by side, and the map of what changed.

One row per panel (a combination of values of `axes[2:]`, `gradlab.panels.split_panels`)
holding A's regime map, B's regime map and the difference map, all laid out as
`gradlab.viz.maps` lays out a map (same colors, axes, tick labels, log or ordinal
scales). In the difference map a cell whose regime did not change keeps its regime's
color, faded; a changed cell is blue when B is better (earlier in
`gradlab.regimes.REGIME_ORDER`), red when worse, dark and hatched when the change
crosses the stable set (stable->unstable: dark red; unstable->stable: dark blue); a cell
run in one sweep only is white, cross-hatched. It reads a `gradlab.compare.Comparison`
and computes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap, to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from gradlab.compare import A_ONLY, B_ONLY, BOTH, TO_STABLE, TO_UNSTABLE, Comparison
from gradlab.panels import AxisSpec, split_panels
from gradlab.regimes import REGIME_ORDER
from gradlab.viz import canvas
from gradlab.viz.canvas import Figure, plt
from gradlab.viz.maps import (
  MISSING_COLOR,
  REGIME_COLORS,
  UNCERTAIN_MARK,
  axis_specs,
  panel_size,
  panel_title,
  regime_colormap,
  style_axis,
)

# Changed cells: (direction, flip) -> (code in the difference mesh, color, legend label).
CHANGES: dict[tuple[str, str], tuple[int, str, str]] = {
  ("better", ""): (0, "#6baed6", "better"),
  ("better", TO_STABLE): (1, "#08306b", f"better, {TO_STABLE}"),
  ("worse", ""): (2, "#fb6a4a", "worse"),
  ("worse", TO_UNSTABLE): (3, "#67000d", f"worse, {TO_UNSTABLE}"),
}
FADE = 0.3  # an unchanged cell: this share of its regime's color over white
FLIP_HATCH = "///"  # over cells whose change crosses the stable set
ONE_SWEEP_HATCH = "xx"  # over cells run in one sweep only
LEGEND_ENTRY_IN = 0.24  # height of a legend entry, inches (the figure is at least as tall)


def compare_map(comparison: Comparison, name_a: str, name_b: str, path: str) -> str:
  """Saves `compare_figure` as a PNG at `path`; returns `path`."""
  return canvas.save_figure(compare_figure(comparison, name_a, name_b), path)


def faded(color: str, share: float = FADE) -> tuple[float, float, float]:
  """`color` at `share` over white."""
  return tuple(1.0 - share * (1.0 - c) for c in to_rgb(color))


def compare_figure(comparison: Comparison, name_a: str, name_b: str) -> Figure:
  """Rows of (map A, map B, difference) per panel, titled with the folder names, with
  one legend for the regimes and the changes (see the module docstring)."""
  axes, cells, counts = list(comparison.axes), comparison.cells, comparison.counts
  x_spec, y_spec = axis_specs(cells, axes)
  strip = len(axes) == 1
  panels = split_panels(cells, axes)
  width, height = panel_size(len(x_spec.values), len(y_spec.values), strip)
  gaps = any(len(rows) < len(x_spec.values) * len(y_spec.values) for _, rows in panels)
  handles = _legend_handles(cells, no_run=gaps or bool(counts.only_a or counts.only_b))
  fig_height = max(len(panels) * height + 1.0, LEGEND_ENTRY_IN * len(handles) + 1.2)
  fig, grid = plt.subplots(len(panels), 3, squeeze=False, layout="constrained",
                           figsize=(3 * width + 2.6, fig_height))
  for row, (title, rows) in enumerate(panels):
    changed = int(rows["changed"].sum())
    common = int((rows["present"] == BOTH).sum())
    heads = [f"A: {name_a}", f"B: {name_b}", f"B vs A: {changed} of {common} changed"]
    for col, ax in enumerate(grid[row]):
      ix = x_spec.index(rows[axes[0]])
      iy = np.zeros(len(rows), dtype=int) if strip else y_spec.index(rows[axes[1]])
      ax.set_facecolor(MISSING_COLOR)
      if col < 2:
        _draw_regimes(ax, rows, "ab"[col], x_spec, y_spec, ix, iy)
      else:
        _draw_changes(ax, rows, x_spec, y_spec, ix, iy)
      style_axis(ax, "x", x_spec, axes[0])
      if strip:
        ax.set_yticks([])
      else:
        style_axis(ax, "y", y_spec, axes[1], tick_labels=col == 0)
      if col:
        ax.set_ylabel("")
      text, size = panel_title(", ".join([heads[col]] + ([title] if title != "all" else [])),
                               width)
      ax.set_title(text, fontsize=size)
  fig.legend(handles=handles, loc="outside right upper", frameon=False)
  # Left-aligned over the panels, so that its lines never run under the legend.
  fig.suptitle(f"A = {name_a} vs B = {name_b}\n{counts.changed} of {counts.cells} cells "
               f"changed regime: {counts.better} better, {counts.worse} worse\n"
               f"({counts.to_unstable} {TO_UNSTABLE}, {counts.to_stable} {TO_STABLE}"
               + _one_sweep_note(counts.only_a, counts.only_b) + ")", x=0.01, ha="left")
  return fig


def _one_sweep_note(only_a: int, only_b: int) -> str:
  parts = ([f"{only_a} cells run in A only"] if only_a else []) + (
    [f"{only_b} cells run in B only"] if only_b else [])
  return f"; {', '.join(parts)}" if parts else ""


def _line_width(x_spec: AxisSpec, y_spec: AxisSpec) -> float:
  return 0.4 if max(len(x_spec.values), len(y_spec.values)) <= 40 else 0.0


def _mesh(ax: Any, x_spec: AxisSpec, y_spec: AxisSpec, ix: np.ndarray, iy: np.ndarray,
          values: np.ndarray, cmap: Any, norm: Any, gid: str) -> Any:
  """A pcolormesh of `values` at cells (iy, ix), NaN masked; tagged `gid`."""
  grid_yx = np.full((len(y_spec.values), len(x_spec.values)), np.nan)
  grid_yx[iy, ix] = values
  line = _line_width(x_spec, y_spec)
  mesh = ax.pcolormesh(x_spec.edges, y_spec.edges, np.ma.masked_invalid(grid_yx), cmap=cmap,
                       norm=norm, edgecolors="white" if line else "face", linewidth=line)
  mesh.set_gid(gid)
  return mesh


def _codes(regimes: pd.Series) -> np.ndarray:
  return np.array([REGIME_ORDER.index(r) if r in REGIME_ORDER else np.nan for r in regimes],
                  dtype=float)


def _draw_regimes(ax: Any, rows: pd.DataFrame, side: str, x_spec: AxisSpec,
                  y_spec: AxisSpec, ix: np.ndarray, iy: np.ndarray) -> None:
  """Sweep `side`'s ("a" or "b") regime map, a dot where its runs disagree."""
  cmap, norm = regime_colormap()
  _mesh(ax, x_spec, y_spec, ix, iy, _codes(rows[f"regime_{side}"]), cmap, norm,
        f"regime_{side}")
  hit = rows[f"uncertain_{side}"].to_numpy(bool)
  if hit.any():
    ax.scatter(x_spec.centers[ix[hit]], y_spec.centers[iy[hit]], zorder=3, **UNCERTAIN_MARK)


def _draw_changes(ax: Any, rows: pd.DataFrame, x_spec: AxisSpec, y_spec: AxisSpec,
                  ix: np.ndarray, iy: np.ndarray) -> None:
  """The difference map: unchanged cells faded (mesh 'unchanged'), changed ones by
  `CHANGES` (mesh 'changed'), hatches over stability flips and one-sweep cells."""
  both = (rows["present"] == BOTH).to_numpy()
  changed = rows["changed"].to_numpy(bool)
  fade_cmap, norm = regime_colormap({r: faded(c) for r, c in REGIME_COLORS.items()})
  same = np.where(both & ~changed, _codes(rows["regime_a"]), np.nan)
  _mesh(ax, x_spec, y_spec, ix, iy, same, fade_cmap, norm, "unchanged")
  keys = zip(rows["direction"], rows["flip"], strict=True)
  code = np.array([CHANGES[k][0] if c else np.nan for k, c in zip(keys, changed, strict=True)],
                  dtype=float)
  colors = [color for _, color, _ in sorted(CHANGES.values())]
  _mesh(ax, x_spec, y_spec, ix, iy, code, ListedColormap(colors),
        BoundaryNorm(np.arange(len(colors) + 1) - 0.5, len(colors)), "changed")
  one_sweep = rows["present"].isin([A_ONLY, B_ONLY]).to_numpy()
  _hatch(ax, x_spec, y_spec, ix[one_sweep], iy[one_sweep], ONE_SWEEP_HATCH, "0.45", "white")
  flips = (rows["flip"] != "").to_numpy() & changed
  _hatch(ax, x_spec, y_spec, ix[flips], iy[flips], FLIP_HATCH, "white", "none")


def _hatch(ax: Any, x_spec: AxisSpec, y_spec: AxisSpec, ix: Sequence[int], iy: Sequence[int],
           hatch: str, color: str, face: str) -> None:
  """A hatched rectangle over each cell (iy, ix), between the cell's edges."""
  for i, j in zip(ix, iy, strict=True):
    x0, x1 = x_spec.edges[i], x_spec.edges[i + 1]
    y0, y1 = y_spec.edges[j], y_spec.edges[j + 1]
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=face, edgecolor=color,
                           hatch=hatch, linewidth=0.0, zorder=2))


def _legend_handles(cells: pd.DataFrame, no_run: bool) -> list[Any]:
  """Regimes ('no run' when `no_run`, 'runs disagree' where some do), then the changes."""
  handles: list[Any] = [Patch(facecolor=REGIME_COLORS[r], edgecolor="0.4", label=r)
                        for r in REGIME_ORDER]
  if no_run:
    handles.append(Patch(facecolor=MISSING_COLOR, edgecolor="0.4", label="no run"))
  if cells["uncertain_a"].any() or cells["uncertain_b"].any():
    handles.append(Line2D([], [], linestyle="", marker=UNCERTAIN_MARK["marker"],
                          markerfacecolor="white", markeredgecolor="black",
                          label="runs disagree\n(majority shown)"))
  handles.append(Patch(facecolor="none", edgecolor="none",
                       label="\nB vs A (stable: trained,\ncatapult or stalled):"))
  handles.append(Patch(facecolor=faded(REGIME_COLORS["trained"]), edgecolor="0.4",
                       label="unchanged\n(regime's color, faded)"))
  for key, (_, color, label) in CHANGES.items():
    handles.append(Patch(facecolor=color, edgecolor="white" if key[1] else "0.4",
                         hatch=FLIP_HATCH if key[1] else None, label=label))
  if cells["present"].isin([A_ONLY, B_ONLY]).any():
    handles.append(Patch(facecolor="white", edgecolor="0.45", hatch=ONE_SWEEP_HATCH,
                         label="run in one sweep only"))
  return handles
