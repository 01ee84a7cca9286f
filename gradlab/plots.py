"""Phase diagrams of a sweep: where training trains, stalls, explodes or diverges.

A sweep's results are a DataFrame with one row per run (see `gradlab.results.load`):
one column per swept axis, named by its dotted config key (`init.sigma_w`,
`optimizer.learning_rate`, ...), plus `regime`, `final_loss` and friends. Every
figure here is a grid of panels over the ordered axes:

- `axes[0]` runs along x and `axes[1]` along y of each panel (a single-row strip
  when there is only one axis);
- each combination of values of `axes[2:]` gets its own panel, titled
  "optimizer.name=adam", at most `MAX_PANELS_PER_ROW` panels per row.

Runs that share a cell (several seeds) are reduced to one value: the most common
regime, ties going to the worse regime (`cell_regimes`), and the median final loss
with non-finite losses counted as +inf (`cell_final_loss`).

Numeric axes whose values are log-spaced (`is_log_spaced`) get a log scale, with
cells bounded by geometric midpoints (`cell_edges`) so that every cell has the same
width on the page. String axes are categorical.

Overlay hook: `regime_figure` and `final_loss_figure` take ``lines``, a function from a
panel's values of `axes[2:]` ({dotted key: value}) to the `MapLine`s to draw over that
panel (e.g. `gradlab.overlays.map_lines`: the mean-field critical line); each line is
named in the legend. `regime_map` and `final_loss_map` draw without lines.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

REGIME_ORDER = ("trained", "stalled", "exploding", "diverged")
"""Regimes from best to worst; ties in a cell go to the later (worse) one."""

REGIME_COLORS = {
  "trained": "#2ca02c",  # green
  "stalled": "#a0a0a0",  # grey
  "exploding": "#ff8c00",  # orange
  "diverged": "#4a0000",  # dark red, almost black
}
NONFINITE_COLOR = "black"  # final-loss map: cells whose median loss is NaN/inf
MISSING_COLOR = "#f2f2f2"  # cells with no run at all
LOSS_CMAP = "YlOrRd"  # low loss light, high loss dark red, non-finite black
MAX_PANELS_PER_ROW = 4
MAX_TICK_LABELS = 10
DPI = 110


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


def is_log_spaced(values: Iterable[float]) -> bool:
  """Whether numeric axis values are best drawn on a log scale.

  True when all distinct values are finite and > 0 and either they span at least a
  factor of 20 (max/min >= 20) or, with three or more values, consecutive sorted
  values have a roughly constant ratio (within 10%). An evenly spaced (arithmetic)
  sequence of three or more values that is not also geometric stays linear, so
  `depth = 1, 2, ..., 32` is linear while `1, 2, 4, ..., 32` is log.
  """
  try:
    v = np.unique(np.asarray(list(values), dtype=float))
  except (TypeError, ValueError):
    return False
  if v.size < 2 or not np.all(np.isfinite(v)) or v[0] <= 0:
    return False
  log_ratios = np.diff(np.log(v))
  geometric = v.size >= 3 and np.ptp(log_ratios) <= 0.1 * np.mean(log_ratios)
  if geometric:
    return True
  diffs = np.diff(v)
  arithmetic = v.size >= 3 and np.ptp(diffs) <= 1e-6 * np.mean(diffs)
  return bool(v[-1] / v[0] >= 20 and not arithmetic)


def cell_edges(values: Iterable[float], log: bool | None = None) -> np.ndarray:
  """Edges of the cells centred on the distinct sorted `values` (n values, n+1 edges).

  On a log axis (`log=None` decides with `is_log_spaced`) inner edges are geometric
  midpoints sqrt(v_i * v_{i+1}); otherwise arithmetic midpoints (v_i + v_{i+1}) / 2.
  The outer edges sit half a step beyond the end values, so every cell is centred on
  its value. A single value gets a cell one decade (log) or one unit (linear) wide.
  """
  v = np.unique(np.asarray(list(values), dtype=float))
  if v.size == 0 or not np.all(np.isfinite(v)):
    raise ValueError(f"cell_edges needs finite numeric values, got {v.tolist()}")
  if log is None:
    log = is_log_spaced(v)
  if log and v[0] <= 0:
    raise ValueError(f"a log axis needs values > 0, got min {v[0]}")
  x = np.log(v) if log else v
  if x.size == 1:
    half = 0.5 * (np.log(10.0) if log else 1.0)
    edges = np.array([x[0] - half, x[0] + half])
  else:
    mid = 0.5 * (x[1:] + x[:-1])
    edges = np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])
  return np.exp(edges) if log else edges


def format_value(value: object) -> str:
  """Short readable label for an axis value: "1e-3", "2.7e-3", "0.25", "8", "adam"."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
    return str(value)
  v = float(value)
  if not math.isfinite(v) or v == 0:
    return str(v) if not math.isfinite(v) else "0"
  if v.is_integer() and abs(v) < 1e4:
    return str(int(v))
  if 1e-2 <= abs(v) < 1e4:
    s = f"{v:.3g}"
    return f"{v:.0f}" if "e" in s else s
  mantissa, exponent = f"{v:.1e}".split("e")
  return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def worst_common_regime(regimes: Iterable[str]) -> str:
  """The most common regime; ties go to the worse one (diverged > exploding > ...)."""
  counts = Counter(regimes)
  _check_regimes(counts)
  if not counts:
    raise ValueError("worst_common_regime needs at least one regime")
  return max(counts, key=lambda r: (counts[r], REGIME_ORDER.index(r)))


def cell_regimes(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """One row per distinct combination of `axes` values: columns axes + regime, n_runs.

  `regime` is `worst_common_regime` over the cell's runs (e.g. its seeds).
  """
  _check_frame(df, axes, ("regime",))
  _check_regimes(Counter(df["regime"]))
  grouped = df.groupby(list(axes), dropna=False, sort=False)["regime"]
  out = grouped.agg(worst_common_regime).to_frame("regime")
  out["n_runs"] = grouped.size()
  return out.reset_index()


def cell_final_loss(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """One row per cell: columns axes + final_loss (median), finite, n_runs.

  Non-finite losses (NaN or +-inf: a diverged run) count as +inf in the median, so a
  cell is non-finite (`finite` False, `final_loss` inf) when at least half of its
  runs did not finish with a finite loss.
  """
  _check_frame(df, axes, ("final_loss",))
  loss = pd.to_numeric(df["final_loss"], errors="coerce").to_numpy(dtype=float)
  loss = np.where(np.isfinite(loss), loss, np.inf)
  frame = df[list(axes)].assign(final_loss=loss)
  grouped = frame.groupby(list(axes), dropna=False, sort=False)["final_loss"]
  out = grouped.agg(lambda s: float(np.median(s.to_numpy()))).to_frame("final_loss")
  out["finite"] = np.isfinite(out["final_loss"].to_numpy())
  out["n_runs"] = grouped.size()
  return out.reset_index()


def split_panels(df: pd.DataFrame, axes: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
  """(title, rows) per combination of `axes[2:]` values, in axis-value order.

  The title reads "optimizer.name=adam, model.depth=4"; with fewer than three axes
  there is one panel titled "all".
  """
  _check_frame(df, axes, ())
  panel_axes = list(axes[2:])
  if not panel_axes:
    return [("all", df)]
  specs = [_AxisSpec.of(df[a]) for a in panel_axes]
  keys = np.stack([s.index(df[a]) for s, a in zip(specs, panel_axes, strict=True)], axis=1)
  panels = []
  for key in sorted({tuple(k) for k in keys.tolist()}):
    mask = np.all(keys == np.asarray(key), axis=1)
    title = ", ".join(f"{a}={s.labels[i]}" for a, s, i in zip(panel_axes, specs, key, strict=True))
    panels.append((title, df[mask]))
  return panels


def regime_map(df: pd.DataFrame, axes: list[str], path: str) -> str:
  """Categorical heatmap of each cell's regime over axes[0] (x) x axes[1] (y).

  One panel per combination of `axes[2:]`; the legend always names all four regimes
  (plus "no run" when some cell of the grid was never run). Returns `path` (PNG).
  """
  return save_figure(regime_figure(df, axes), path)


def regime_figure(df: pd.DataFrame, axes: list[str], lines: PanelLines | None = None
                  ) -> Figure:
  """The figure `regime_map` saves, with `lines` (see the module docstring) drawn over
  every panel and named in the legend."""
  _check_frame(df, axes, ("regime",))
  cells = cell_regimes(df, axes)
  cells["_code"] = [REGIME_ORDER.index(r) for r in cells["regime"]]
  cmap = ListedColormap([REGIME_COLORS[r] for r in REGIME_ORDER])
  norm = BoundaryNorm(np.arange(len(REGIME_ORDER) + 1) - 0.5, len(REGIME_ORDER))
  fig, missing, _ = _draw_panels(df, axes, cells, "_code", cmap, norm, lines=lines)
  handles = [Patch(facecolor=REGIME_COLORS[r], edgecolor="0.4", label=r) for r in REGIME_ORDER]
  if missing:
    handles.append(Patch(facecolor=MISSING_COLOR, edgecolor="0.4", label="no run"))
  handles += _line_handles(fig)
  fig.legend(handles=handles, title="regime", loc="outside right upper", frameon=False)
  fig.suptitle(f"regime map ({len(df)} runs)")
  return fig


def final_loss_map(df: pd.DataFrame, axes: list[str], path: str) -> str:
  """Heatmap of each cell's median final loss on a log color scale, same grid as
  `regime_map`; cells whose median loss is NaN/inf are drawn black. Returns `path`.
  """
  return save_figure(final_loss_figure(df, axes), path)


def final_loss_figure(df: pd.DataFrame, axes: list[str], lines: PanelLines | None = None
                      ) -> Figure:
  """The figure `final_loss_map` saves, with `lines` drawn over every panel."""
  _check_frame(df, axes, ("final_loss",))
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
    bar.set_label(f"final loss (median over seeds, log scale); {NONFINITE_COLOR} = non-finite")
  handles = [Patch(facecolor=NONFINITE_COLOR, edgecolor="0.4", label="non-finite\n(diverged)")]
  if missing:
    handles.append(Patch(facecolor=MISSING_COLOR, edgecolor="0.4", label="no run"))
  handles += _line_handles(fig)
  fig.legend(handles=handles, loc="outside right lower", frameon=False)
  n_nonfinite = int((~cells["finite"]).sum())
  fig.suptitle(f"final loss ({len(df)} runs, {n_nonfinite} non-finite cells)")
  return fig


# ----------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _AxisSpec:
  """How one axis is drawn: sorted distinct values, scale, cell edges, tick labels."""

  values: tuple
  scale: str  # "log", "linear" or "categorical"
  edges: np.ndarray
  labels: tuple[str, ...]

  @staticmethod
  def of(column: pd.Series) -> _AxisSpec:
    numeric = (
      pd.api.types.is_numeric_dtype(column)
      and not pd.api.types.is_bool_dtype(column)
      and bool(np.all(np.isfinite(column.to_numpy(dtype=float))))
    )
    if numeric:
      values = np.unique(column.to_numpy(dtype=float))
      log = is_log_spaced(values)
      return _AxisSpec(
        tuple(values.tolist()),
        "log" if log else "linear",
        cell_edges(values, log),
        tuple(format_value(v) for v in values),
      )
    labels = tuple(sorted({str(v) for v in column}))
    return _AxisSpec(labels, "categorical", np.arange(len(labels) + 1) - 0.5, labels)

  @property
  def centers(self) -> np.ndarray:
    if self.scale == "categorical":
      return np.arange(len(self.values), dtype=float)
    return np.asarray(self.values, dtype=float)

  def index(self, column: pd.Series) -> np.ndarray:
    """Position of each entry of `column` among `values`."""
    if self.scale == "categorical":
      lookup = {label: i for i, label in enumerate(self.labels)}
      return np.array([lookup[str(v)] for v in column], dtype=int)
    return np.searchsorted(np.asarray(self.values), column.to_numpy(dtype=float))


def _check_frame(df: pd.DataFrame, axes: Sequence[str], columns: Sequence[str]) -> None:
  if len(axes) == 0:
    raise ValueError("need at least one axis to plot; got axes=[]")
  missing = [c for c in (*axes, *columns) if c not in df.columns]
  if missing:
    raise ValueError(f"missing column(s) {missing}; the frame has {list(df.columns)}")
  if len(df) == 0:
    raise ValueError("the results frame has no runs")


def _check_regimes(counts: Counter) -> None:
  unknown = sorted(str(r) for r in counts if r not in REGIME_ORDER)
  if unknown:
    raise ValueError(f"unknown regime(s) {unknown}; known: {', '.join(REGIME_ORDER)}")


def _panel_size(n_x: int, n_y: int, strip: bool) -> tuple[float, float]:
  width = float(np.clip(0.3 * n_x + 1.6, 3.2, 6.0))
  height = 1.5 if strip else float(np.clip(0.3 * n_y + 1.4, 2.8, 5.0))
  return width, height


def _draw_panels(df, axes, cells, column, cmap, norm, overlay=None, lines=None):
  """Draw `cells[column]` as a pcolormesh per panel, then `lines(panel values)` over each
  panel. Returns (fig, any_missing, meshes)."""
  x_spec = _AxisSpec.of(df[axes[0]])
  strip = len(axes) == 1
  y_spec = (
    _AxisSpec(("",), "categorical", np.array([-0.5, 0.5]), ("",))
    if strip
    else _AxisSpec.of(df[axes[1]])
  )
  panels = split_panels(cells, axes)
  n_cols = min(MAX_PANELS_PER_ROW, len(panels))
  n_rows = math.ceil(len(panels) / n_cols)
  width, height = _panel_size(len(x_spec.values), len(y_spec.values), strip)
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
    _style_axis(ax, "x", x_spec, axes[0])
    if strip:
      ax.set_yticks([])
    else:
      _style_axis(ax, "y", y_spec, axes[1], tick_labels=k % n_cols == 0)
    if k % n_cols != 0:
      ax.set_ylabel("")
    if len(panels) > 1 or title != "all":
      ax.set_title(title, fontsize=10)
    if lines is not None:
      values = {a: rows[a].iloc[0] for a in axes[2:]}
      for map_line in lines(values):
        draw_map_line(ax, map_line, axes)
  return fig, any_missing, meshes


def draw_map_line(ax, line: MapLine, axes: Sequence[str]) -> None:
  """Draws one `MapLine` on a panel whose x is axes[0] and y axes[1] (none for a strip),
  keeping the panel's limits."""
  x_key, y_key = axes[0], (axes[1] if len(axes) > 1 else None)
  keys = list(line.coords)
  style = dict(color=line.color, linestyle=line.linestyle, linewidth=2.0, label=line.label)
  limits = ax.get_xlim(), ax.get_ylim()
  if keys == [x_key]:
    for v in line.coords[x_key]:
      ax.axvline(float(v), **style)
  elif keys == [y_key]:
    for v in line.coords[y_key]:
      ax.axhline(float(v), **style)
  elif y_key is not None and set(keys) == {x_key, y_key}:
    ax.plot(np.asarray(line.coords[x_key], float), np.asarray(line.coords[y_key], float),
            **style)
  else:
    raise ValueError(f"line '{line.label}' is over {keys}, not over the map axes "
                     f"{list(axes[:2])}")
  ax.set_xlim(limits[0])
  ax.set_ylim(limits[1])


def _line_handles(fig) -> list[Line2D]:
  """One legend handle per distinct label of the lines drawn on the figure's panels."""
  seen: dict[str, Line2D] = {}
  for ax in fig.axes:
    for line in ax.get_lines():
      label = line.get_label()
      if label and not label.startswith("_") and label not in seen:
        seen[label] = Line2D([], [], color=line.get_color(), linestyle=line.get_linestyle(),
                             linewidth=line.get_linewidth(), label=label)
  return list(seen.values())


def _style_axis(ax, which: str, spec: _AxisSpec, name: str, tick_labels: bool = True) -> None:
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


def save_figure(fig: Figure, path: str) -> str:
  """Saves `fig` as a PNG at `path` (folders created), closes it, returns `path`."""
  return _save(fig, path)


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
  finally:
    plt.close(fig)
  return path
