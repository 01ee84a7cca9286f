"""boundary.png: the boundary a boundary search found, over a dense regime map if given.

Without a dense sweep: x is the first other axis, y the boundary axis, a panel per value
of the remaining other axes; a bracketed point is drawn at its estimate with a bar over
its bracket [lo, hi], a point stable over the whole axis as a triangle pointing out of
the map at the axis maximum, one unstable everywhere as a triangle at the minimum.

With a dense sweep (``--dense=DIR``, ``sweep.dense_workdir`` or
``python -m experiments.plot --workdir=DENSE --boundary=DIR``) whose first two axes are
the boundary axis and one other axis: the dense regime map
(`gradlab.viz.maps.regime_figure`) with, over each panel, the boundary estimate (solid) and
its bracket (dotted) through its ``lines`` hook.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from gradlab import results
from gradlab.panels import format_value, is_log_spaced
from gradlab.registry import ConfigError
from gradlab.sweep.boundary import BOUNDARY_JSON, load_boundary
from gradlab.viz import canvas
from gradlab.viz.canvas import Figure, plt
from gradlab.viz.maps import MapLine, PanelLines, regime_figure

CURVE_COLOR = "#1f4eb4"
MAX_PANELS_PER_ROW = 4


def _numeric(values: pd.Series) -> bool:
  return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _panels(df: pd.DataFrame, keys: list[str]) -> list[tuple[str, tuple, pd.DataFrame]]:
  if not keys:
    return [("", (), df)]
  out = []
  for values, rows in df.groupby(keys, sort=True):
    values = values if isinstance(values, tuple) else (values,)
    title = ", ".join(f"{k}={format_value(v)}" for k, v in zip(keys, values, strict=True))
    out.append((title, values, rows))
  return out


def _curve(ax: Any, rows: pd.DataFrame, x: str | None, boundary_on_y: bool,
           label: str | None) -> None:
  """The boundary of `rows` against their `x` values (positions 0.. if x is None)."""
  rows = rows.sort_values(x) if x else rows
  pos = rows[x].to_numpy(float) if x else np.arange(len(rows), dtype=float)
  est, lo, hi = (rows[c].to_numpy(float) for c in ("estimate", "lo", "hi"))
  status = rows["status"].to_numpy(str)
  ok = status == "bracketed"
  err = np.vstack([est - lo, hi - est])
  place = functools.partial(_place, boundary_on_y)
  px, py = place(pos[ok], est[ok])
  bars = {"yerr" if boundary_on_y else "xerr": err[:, ok]}
  ax.errorbar(px, py, **bars, color=CURVE_COLOR, marker="o", ms=4, lw=1.6, capsize=2,
              label=label or "boundary (estimate, bracket)")
  for kind, marker_y, marker_x in (("all_stable", "^", ">"), ("all_unstable", "v", "<")):
    sel = status == kind
    if sel.any():
      px, py = place(pos[sel], est[sel])
      ax.plot(px, py, ls="none", marker=marker_y if boundary_on_y else marker_x,
              color=CURVE_COLOR, mfc="white", ms=7)


def _place(boundary_on_y: bool, a: np.ndarray, b: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
  """(x, y) of positions `a` and boundary values `b`."""
  return (a, b) if boundary_on_y else (b, a)


def _boundary_lines(table: pd.DataFrame, axis: str, other: str, line_keys: list[str]
                    ) -> PanelLines:
  """The `gradlab.viz.maps.PanelLines` hook: per dense panel, the boundary estimate (solid)
  and its bracket (dashed) of the boundary rows with that panel's values."""
  return functools.partial(_panel_boundary, table, axis, other, line_keys)


def _panel_boundary(table: pd.DataFrame, axis: str, other: str, line_keys: list[str],
                    panel: dict[str, Any]) -> list[MapLine]:
  rows = table
  for key, value in panel.items():
    if key in rows.columns:
      rows = rows[rows[key] == value]
  out = []
  for label, _, line in _panels(rows, line_keys):
    line = line.sort_values(other)
    ok = (line["status"] == "bracketed").to_numpy()
    xs = line[other].to_numpy(float)
    name = f"boundary ({label})" if label else "boundary"
    for column, style, suffix in (("estimate", "-", ""), ("lo", ":", " bracket"),
                                  ("hi", ":", " bracket")):
      ys = np.where(ok, line[column].to_numpy(float), np.nan)
      out.append(MapLine(name + suffix, {other: xs, axis: ys}, CURVE_COLOR, style))
  return out


def _over_dense(table: pd.DataFrame, info: dict[str, Any], dense_dir: str) -> Figure:
  """The dense sweep's regime map (`gradlab.viz.maps.regime_figure`) with the boundary."""
  axis, outer_axes = info["axis"], list(info["outer_axes"])
  dense = results.load(dense_dir)
  dense_axes = list(results.read_config(dense_dir).get("axes", []))
  if dense.empty:
    raise ConfigError(f"dense sweep '{dense_dir}' holds no finished runs")
  if len(dense_axes) < 2 or axis not in dense_axes[:2]:
    raise ConfigError(f"dense sweep '{dense_dir}' must have '{axis}' as its first or second "
                      f"axis to draw the boundary over it (its axes: {dense_axes})")
  other = dense_axes[1] if axis == dense_axes[0] else dense_axes[0]
  if other not in outer_axes or not _numeric(dense[other]) or not _numeric(table[other]):
    raise ConfigError(f"the boundary search's other axes {outer_axes} must include the "
                      f"dense map's numeric axis '{other}' to draw over it")
  line_keys = [k for k in outer_axes if k not in dense_axes]
  fig = regime_figure(dense, dense_axes, lines=_boundary_lines(table, axis, other, line_keys))
  return fig


def _alone(table: pd.DataFrame, info: dict[str, Any]) -> Figure:
  """The boundary against the first other axis, a panel per value of the others."""
  axis, outer_axes, log_scale = info["axis"], list(info["outer_axes"]), info["log_scale"]
  x = outer_axes[0] if outer_axes else None
  numeric_x = x is not None and _numeric(table[x])
  panels = _panels(table, outer_axes[1:])
  n_cols = min(MAX_PANELS_PER_ROW, len(panels))
  n_rows = math.ceil(len(panels) / n_cols)
  fig, grid = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                           figsize=(4.6 * n_cols + 1.6, 3.6 * n_rows + 0.4))
  bracket = np.asarray(info["bracket"], float)
  pad = 0.05 * (bracket[1] - bracket[0])
  for k, ax in enumerate(grid.ravel()):
    if k >= len(panels):
      ax.remove()
      continue
    title, _, rows = panels[k]
    _curve(ax, rows, x if numeric_x else None, True, None)
    if not numeric_x and x is not None:
      ordered = rows.sort_values(x) if x else rows
      ax.set_xticks(np.arange(len(rows)), [format_value(v) for v in ordered[x]])
    if numeric_x and is_log_spaced(table[x].unique()):
      ax.set_xscale("log")
    if log_scale:
      ax.set_yscale("log")
      ax.set_ylim(bracket[0] / 1.3, bracket[1] * 1.3)
    else:
      ax.set_ylim(bracket[0] - pad, bracket[1] + pad)
    ax.set_xlabel(x or "")
    ax.set_ylabel(axis)
    if title:
      ax.set_title(title, fontsize=10)
  fig.legend(handles=[plt.Line2D([], [], color=CURVE_COLOR, marker="o", label="boundary")],
             loc="outside right upper", frameon=False)
  return fig


def draw_boundary(boundary_dir: str, path: str | None = None, dense_dir: str = "") -> str:
  """Draws boundary.png of a boundary-search workdir (over the regime map of the dense
  sweep `dense_dir` when given); returns the path."""
  table = load_boundary(boundary_dir)
  with open(os.path.join(boundary_dir, BOUNDARY_JSON)) as f:
    info = json.load(f)
  fig = _over_dense(table, info, dense_dir) if dense_dir else _alone(table, info)
  fig.suptitle(f"boundary along {info['axis']}\n{info['runs']} runs (dense grid of the same "
               f"resolution: {info['dense_runs_for_same_resolution']})", fontsize=9, x=0.02,
               ha="left")
  return canvas.save_figure(fig, path or os.path.join(boundary_dir, "boundary.png"))
