"""Phase diagrams of a sweep: where training trains, stalls, explodes or diverges.

Every figure here is a grid of panels over the ordered axes of a results frame, laid
out as `gradlab.panels` describes (x = axes[0], y = axes[1], a panel per combination of
`axes[2:]`, at most `MAX_PANELS_PER_ROW` panels per row); seeds that share a cell are
reduced by `gradlab.panels.cell_regimes` and `gradlab.panels.cell_final_loss`. The
regime map shows each cell's majority label and marks with a dot the cells where
fewer than all their runs (``sweep.replicas``, or seeds) agree.

Overlay hook: `regime_figure` and `final_loss_figure` take ``lines``, a function from a
panel's values of `axes[2:]` ({dotted key: value}) to the `MapLine`s to draw over that
panel (e.g. `gradlab.viz.overlays.map_lines`: the mean-field critical line); each line
is named in the legend. `regime_map` and `final_loss_map` draw without lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from gradlab.panels import AxisSpec, cell_final_loss, cell_regimes, check_frame, split_panels
from gradlab.regimes import REGIME_ORDER
from gradlab.viz import canvas
from gradlab.viz.canvas import Figure, plt

REGIME_COLORS = {
  "trained": "#2ca02c",  # green
  "catapult": "#17becf",  # teal: spiked, then trained
  "stalled": "#a0a0a0",  # grey
  "exploding": "#ff8c00",  # orange
  "diverged": "#4a0000",  # dark red, almost black
}
NONFINITE_COLOR = "black"  # final-loss map: cells whose median loss is NaN/inf
MISSING_COLOR = "#f2f2f2"  # cells with no run at all
UNCERTAIN_MARK = dict(marker="o", s=14, facecolors="white", edgecolors="black",
                      linewidths=0.8)  # regime map: cells whose runs disagree
LOSS_CMAP = "YlOrRd"  # low loss light, high loss dark red, non-finite black
MAX_PANELS_PER_ROW = 4
MAX_TICK_LABELS = 10


@dataclass(frozen=True)
class MapLine:
  """A line drawn over a map panel, in the data coordinates of the panel's axes.

  coords: dotted axis key -> values. With ONE key the line is constant along the other
  axis: a vertical line at each value when the key is axes[0] (x), horizontal when it is
  axes[1] (y). With the two keys axes[0] and axes[1] it is the curve through the points
  (non-finite points leave gaps).
  """

  label: str
  coords: Mapping[str, Sequence[float]]
  color: str = "#1f4fff"
  linestyle: str = "-"


PanelLines = Callable[[Mapping[str, Any]], Sequence[MapLine]]
"""panel values of axes[2:] ({dotted key: value}; {} for a single panel) -> lines."""


def regime_map(df: pd.DataFrame, axes: list[str], path: str) -> str:
  """Categorical heatmap of each cell's regime over axes[0] (x) x axes[1] (y).

  One panel per combination of `axes[2:]`; the legend always names every regime
  (plus "no run" when some cell of the grid was never run). A cell of several runs
  shows their majority label (ties to the worse); a dot marks a cell where fewer than
  all of them agree. Returns `path` (PNG).
  """
  return canvas.save_figure(regime_figure(df, axes), path)


def regime_figure(df: pd.DataFrame, axes: list[str], lines: PanelLines | None = None
                  ) -> Figure:
  """The figure `regime_map` saves, with `lines` (see the module docstring) drawn over
  every panel and named in the legend."""
  check_frame(df, axes, ("regime",))
  cells = cell_regimes(df, axes)
  cells["_code"] = [REGIME_ORDER.index(r) for r in cells["regime"]]
  cmap, norm = regime_colormap()
  fig, missing, _ = _draw_panels(df, axes, cells, "_code", cmap, norm, lines=lines,
                                 marks="uncertain")
  handles = [Patch(facecolor=REGIME_COLORS[r], edgecolor="0.4", label=r) for r in REGIME_ORDER]
  if missing:
    handles.append(Patch(facecolor=MISSING_COLOR, edgecolor="0.4", label="no run"))
  n_uncertain = int(cells["uncertain"].sum())
  runs = sorted(set(cells["n_runs"].tolist()))
  if runs != [1]:
    handles.append(Line2D([], [], linestyle="", marker=UNCERTAIN_MARK["marker"],
                          markerfacecolor="white", markeredgecolor="black",
                          label="runs disagree\n(majority shown)"))
  handles += _line_handles(fig)
  fig.legend(handles=handles, title="regime", loc="outside right upper", frameon=False)
  span = str(runs[0]) if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
  per_cell = ("" if runs == [1] else
              f"; {span} runs per cell, {n_uncertain} of {len(cells)} cells uncertain")
  fig.suptitle(f"regime map ({len(df)} runs{per_cell})")
  return fig


def final_loss_map(df: pd.DataFrame, axes: list[str], path: str) -> str:
  """Heatmap of each cell's median final loss on a log color scale, same grid as
  `regime_map`; cells whose median loss is NaN/inf are drawn black. Returns `path`.
  """
  return canvas.save_figure(final_loss_figure(df, axes), path)


def final_loss_figure(df: pd.DataFrame, axes: list[str], lines: PanelLines | None = None
                      ) -> Figure:
  """The figure `final_loss_map` saves, with `lines` drawn over every panel."""
  check_frame(df, axes, ("final_loss",))
  cells = cell_final_loss(df, axes)
  finite = cells.loc[cells["finite"] & (cells["final_loss"] > 0), "final_loss"]
  if finite.empty:
    vmin, vmax = 1.0, 10.0
  else:
    vmin, vmax = float(finite.min()), float(finite.max())
    if vmax / vmin < 1.01:
      vmin, vmax = vmin / math.sqrt(10), vmax * math.sqrt(10)
  # Losses <= 0 (exact fits) sit at the bottom of the scale instead of vanishing.
  cells["_value"] = np.where(cells["finite"], np.maximum(cells["final_loss"], vmin), np.nan)
  cells["_nonfinite"] = np.where(cells["finite"], np.nan, 0.0)
  norm = LogNorm(vmin=vmin, vmax=vmax)
  fig, missing, meshes = _draw_panels(
    df,
    axes,
    cells,
    "_value",
    plt.get_cmap(LOSS_CMAP),
    norm,
    overlay=("_nonfinite", ListedColormap([NONFINITE_COLOR])),
    lines=lines,
  )
  if not finite.empty:
    bar = fig.colorbar(meshes[0], ax=fig.axes, shrink=0.9, pad=0.02)
    bar.set_label("final loss (median over seeds, log scale)")
  handles = [Patch(facecolor=NONFINITE_COLOR, edgecolor="0.4", label="non-finite\n(diverged)")]
  if missing:
    handles.append(Patch(facecolor=MISSING_COLOR, edgecolor="0.4", label="no run"))
  handles += _line_handles(fig)
  fig.legend(handles=handles, loc="outside right lower", frameon=False)
  n_nonfinite = int((~cells["finite"]).sum())
  fig.suptitle(f"final loss ({len(df)} runs, {n_nonfinite} non-finite cells)")
  canvas.plain_log_ticks(fig)  # a colour bar under a decade reads 0.6, not 6 x 10^-1
  return fig


def draw_map_line(ax: Any, line: MapLine, axes: Sequence[str],
                  specs: Sequence[AxisSpec | None] = (None, None)) -> None:
  """Draws one `MapLine` on a panel whose x is axes[0] and y axes[1] (none for a strip),
  keeping the panel's limits; `specs` (x, y) place values on ordinal axes
  (`AxisSpec.position`)."""
  x_key, y_key = axes[0], (axes[1] if len(axes) > 1 else None)
  keys = list(line.coords)
  style = dict(color=line.color, linestyle=line.linestyle, linewidth=2.0, label=line.label)
  limits = ax.get_xlim(), ax.get_ylim()

  def at(k: int, key: str) -> np.ndarray:
    v = np.asarray(line.coords[key], float)
    return v if specs[k] is None else specs[k].position(v)

  if keys == [x_key]:
    for v in at(0, x_key):
      ax.axvline(float(v), **style)
  elif keys == [y_key]:
    for v in at(1, y_key):
      ax.axhline(float(v), **style)
  elif y_key is not None and set(keys) == {x_key, y_key}:
    ax.plot(at(0, x_key), at(1, y_key), **style)
  else:
    raise ValueError(f"line '{line.label}' is over {keys}, not over the map axes "
                     f"{list(axes[:2])}")
  ax.set_xlim(limits[0])
  ax.set_ylim(limits[1])


def regime_colormap(colors: Mapping[str, str] = REGIME_COLORS
                    ) -> tuple[ListedColormap, BoundaryNorm]:
  """(cmap, norm) drawing a cell's code REGIME_ORDER.index(regime) in `colors[regime]`."""
  cmap = ListedColormap([colors[r] for r in REGIME_ORDER])
  return cmap, BoundaryNorm(np.arange(len(REGIME_ORDER) + 1) - 0.5, len(REGIME_ORDER))


def axis_specs(df: pd.DataFrame, axes: Sequence[str]) -> tuple[AxisSpec, AxisSpec]:
  """How a map lays out x (axes[0]) and y (axes[1]; a single blank row, a strip, when
  there is one axis) over the values of `df`."""
  x_spec = AxisSpec.of(df[axes[0]])
  if len(axes) == 1:
    return x_spec, AxisSpec(("",), "categorical", np.array([-0.5, 0.5]), ("",))
  return x_spec, AxisSpec.of(df[axes[1]])


# ----------------------------------------------------------------------------- internals


TITLE_POINTS = 10.0
CHAR_WIDTH_EM = 0.6  # a character's width in ems, roughly, in matplotlib's DejaVu Sans


def panel_title(title: str, panel_width_in: float) -> tuple[str, float]:
  """`title` ("a=1, b=2") fitted to a panel `panel_width_in` inches wide: one
  "key=value" per line when the whole does not fit on one, and a smaller font for a
  line still too long; (text, font size in points)."""
  fits = panel_width_in * 72.0 / (CHAR_WIDTH_EM * TITLE_POINTS)
  parts = title.split(", ")
  lines = [title] if len(title) <= fits else parts
  longest = max(len(line) for line in lines)
  size = TITLE_POINTS if longest <= fits else max(6.0, TITLE_POINTS * fits / longest)
  return "\n".join(lines), size


def panel_size(n_x: int, n_y: int, strip: bool) -> tuple[float, float]:
  """(width, height) in inches of one panel of `n_x` x `n_y` cells (a strip: one row)."""
  width = float(np.clip(0.3 * n_x + 1.6, 3.2, 6.0))
  height = 1.5 if strip else float(np.clip(0.3 * n_y + 1.4, 2.8, 5.0))
  return width, height


def _draw_panels(df: pd.DataFrame, axes: Sequence[str], cells: pd.DataFrame, column: str,
                 cmap: Any, norm: Any, overlay: tuple[str, Any] | None = None,
                 lines: PanelLines | None = None, marks: str | None = None
                 ) -> tuple[Figure, bool, list[Any]]:
  """Draw `cells[column]` as a pcolormesh per panel, a dot (`UNCERTAIN_MARK`) at the
  centre of each cell where the boolean column `marks` is True, then `lines(panel
  values)` over each panel. Returns (fig, any_missing, meshes)."""
  x_spec, y_spec = axis_specs(df, axes)
  strip = len(axes) == 1
  panels = split_panels(cells, axes)
  n_cols = min(MAX_PANELS_PER_ROW, len(panels))
  n_rows = math.ceil(len(panels) / n_cols)
  width, height = panel_size(len(x_spec.values), len(y_spec.values), strip)
  fig, grid = plt.subplots(
    n_rows,
    n_cols,
    squeeze=False,
    layout="constrained",
    figsize=(n_cols * width + 1.8, n_rows * height + 0.6),
  )
  any_missing, meshes = False, []
  line = 0.4 if max(len(x_spec.values), len(y_spec.values)) <= 40 else 0.0
  for k, ax in enumerate(grid.ravel()):
    if k >= len(panels):
      ax.remove()
      continue
    title, rows = panels[k]
    ix = x_spec.index(rows[axes[0]])
    iy = np.zeros(len(rows), dtype=int) if strip else y_spec.index(rows[axes[1]])
    ax.set_facecolor(MISSING_COLOR)
    any_missing |= len(rows) < len(x_spec.values) * len(y_spec.values)
    layers = [(column, cmap, norm)]
    if overlay is not None:
      layers.append((overlay[0], overlay[1], None))
    for name, layer_cmap, layer_norm in layers:
      grid_yx = np.full((len(y_spec.values), len(x_spec.values)), np.nan)
      grid_yx[iy, ix] = rows[name].to_numpy(dtype=float)
      meshes.append(
        ax.pcolormesh(
          x_spec.edges,
          y_spec.edges,
          np.ma.masked_invalid(grid_yx),
          cmap=layer_cmap,
          norm=layer_norm,
          edgecolors="white" if line else "face",
          linewidth=line,
        )
      )
    if marks is not None and rows[marks].any():
      hit = rows[marks].to_numpy(bool)
      ax.scatter(x_spec.centers[ix[hit]], y_spec.centers[iy[hit]], zorder=3, **UNCERTAIN_MARK)
    style_axis(ax, "x", x_spec, axes[0])
    if strip:
      ax.set_yticks([])
    else:
      style_axis(ax, "y", y_spec, axes[1], tick_labels=k % n_cols == 0)
    if k % n_cols != 0:
      ax.set_ylabel("")
    if len(panels) > 1 or title != "all":
      text, size = panel_title(title, width)
      ax.set_title(text, fontsize=size)
    if lines is not None:
      values = {a: rows[a].iloc[0] for a in axes[2:]}
      for map_line in lines(values):
        draw_map_line(ax, map_line, axes, (x_spec, None if strip else y_spec))
  return fig, any_missing, meshes


def _line_handles(fig: Figure) -> list[Line2D]:
  """One legend handle per distinct label of the lines drawn on the figure's panels."""
  seen: dict[str, Line2D] = {}
  for ax in fig.axes:
    for line in ax.get_lines():
      label = line.get_label()
      if label and not label.startswith("_") and label not in seen:
        seen[label] = Line2D([], [], color=line.get_color(), linestyle=line.get_linestyle(),
                             linewidth=line.get_linewidth(), label=label)
  return list(seen.values())


def style_axis(ax: Any, which: str, spec: AxisSpec, name: str, tick_labels: bool = True
               ) -> None:
  """Scale, limits, readable (thinned) tick labels and the dotted axis name."""
  axis = ax.xaxis if which == "x" else ax.yaxis
  if spec.scale == "log":
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
  (ax.set_xlim if which == "x" else ax.set_ylim)(spec.edges[0], spec.edges[-1])
  step = max(1, math.ceil(len(spec.values) / MAX_TICK_LABELS))
  ticks = spec.centers[::step]
  labels = list(spec.labels[::step]) if tick_labels else [""] * len(ticks)
  axis.set_ticks(ticks, labels)
  axis.set_minor_locator(NullLocator())
  if which == "x":
    ax.set_xlabel(name)
    if len(ticks) > 5 or max(map(len, labels), default=0) > 5:
      ax.tick_params(axis="x", labelrotation=45)
      for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
  else:
    ax.set_ylabel(name)
