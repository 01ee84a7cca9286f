"""Figure helpers for the reproductions: gradlab's curves or regime map with the paper's
value (a reference line) or curve drawn on it, and the source in the title.

Each takes plain numbers (the `figure` dict of an `Outcome`), so a figure can be redrawn
from reproduction.json alone. Drawing only: nothing here trains or judges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradlab.regimes import REGIME_ORDER
from gradlab.viz.canvas import plt, save_figure
from gradlab.viz.maps import MISSING_COLOR, REGIME_COLORS

# A series: {"label", "x", "y"} with optional "style" ('-', '--', 'o-', ...) and "color".
Series = Mapping[str, Any]
# A reference: {"label", "y"} (a horizontal line) or {"label", "x"} (a vertical one), or a
# paper curve as a Series with "paper": True (drawn dashed, in black).


def title_of(paper_id: str, what: str, source: str, scale: str) -> str:
  tag = {"quick": " (CPU variant)", "smoke": " (smoke size: not a result)"}.get(scale, "")
  return f"{paper_id}: {what}{tag}\npaper's value: {source}"


def _draw_series(ax: Any, series: Sequence[Series]) -> None:
  for s in series:
    x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
    if s.get("paper"):
      ax.plot(x, y, "k--", lw=1.6, label=s["label"])
    else:
      ax.plot(x, y, s.get("style", "o-"), color=s.get("color"), label=s["label"], ms=4)


def _draw_refs(ax: Any, refs: Sequence[Mapping[str, Any]]) -> None:
  for r in refs:
    style = dict(color=r.get("color", "black"), ls=r.get("ls", ":"), lw=1.4, label=r["label"])
    if "y" in r:
      ax.axhline(float(r["y"]), **style)
    else:
      ax.axvline(float(r["x"]), **style)


def curves_panel(ax: Any, panel: Mapping[str, Any]) -> None:
  """One axes: `panel` = {"series", "refs", "xlabel", "ylabel", "logx", "logy", "title",
  "xticklabels" (names for x = 0, 1, ...: categories)}."""
  _draw_series(ax, panel.get("series", ()))
  _draw_refs(ax, panel.get("refs", ()))
  ax.set_xlabel(panel.get("xlabel", ""))
  ax.set_ylabel(panel.get("ylabel", ""))
  if panel.get("xticklabels"):
    names = list(panel["xticklabels"])
    ax.set_xticks(range(len(names)), names)
  if panel.get("logx"):
    ax.set_xscale("log")
  if panel.get("logy"):
    ax.set_yscale("log")
  if panel.get("title"):
    ax.set_title(panel["title"], fontsize=9)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=7)


def regime_panel(ax: Any, panel: Mapping[str, Any]) -> None:
  """A categorical regime map: `panel` = {"x", "y" (axis values), "regimes" (rows = y,
  cols = x; '' for no run), "xlabel", "ylabel", "logx", "logy", "series", "refs",
  "yticklabels" (names for the rows: categories)}. Cells
  are drawn at their index; overlay series give x and y in axis units and are mapped by
  log or linear interpolation onto the cell grid."""
  xs, ys = np.asarray(panel["x"], float), np.asarray(panel["y"], float)
  grid = panel["regimes"]
  order = list(REGIME_ORDER)
  codes = np.array([[order.index(r) if r in order else -1 for r in row] for row in grid], float)
  rgb = np.array([[_rgb(REGIME_COLORS[order[int(c)]] if c >= 0 else MISSING_COLOR)
                   for c in row] for row in codes])
  ax.imshow(rgb, origin="lower", aspect="auto", interpolation="nearest")
  ax.set_xticks(range(len(xs)), [f"{v:.3g}" for v in xs], rotation=60, fontsize=7)
  ax.set_yticks(range(len(ys)), panel.get("yticklabels") or [f"{v:.3g}" for v in ys],
                fontsize=7)
  ax.set_xlabel(panel.get("xlabel", ""))
  ax.set_ylabel(panel.get("ylabel", ""))
  to_x = _index_map(xs, panel.get("logx", False))
  to_y = _index_map(ys, panel.get("logy", False))
  for s in panel.get("series", ()):
    ax.plot(to_x(s["x"]), to_y(s["y"]), s.get("style", "k--"), lw=1.8, label=s["label"])
  for r in panel.get("refs", ()):
    if "y" in r:
      ax.axhline(to_y([r["y"]])[0], color="black", ls=":", lw=1.4, label=r["label"])
    else:
      ax.axvline(to_x([r["x"]])[0], color="black", ls=":", lw=1.4, label=r["label"])
  ax.set_xlim(-0.5, len(xs) - 0.5)
  ax.set_ylim(-0.5, len(ys) - 0.5)
  if panel.get("title"):
    ax.set_title(panel["title"], fontsize=9)
  present = sorted({r for row in grid for r in row if r in order}, key=order.index)
  handles = [plt.Rectangle((0, 0), 1, 1, color=REGIME_COLORS[r]) for r in present]
  lines, labels = ax.get_legend_handles_labels()
  ax.legend(handles + lines, present + labels, fontsize=7, loc="upper left",
            bbox_to_anchor=(1.01, 1.0))


def _rgb(color: str) -> tuple[float, float, float]:
  from matplotlib.colors import to_rgb

  return to_rgb(color)


def _index_map(values: np.ndarray, log: bool):
  """Axis units -> fractional cell index (piecewise linear in log(value) when `log`);
  points outside the axis range become NaN (not drawn)."""
  scale = np.log if log else (lambda v: v)
  ref = scale(values)
  order = np.argsort(ref)

  def to_index(v: Any) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
      v = scale(np.asarray(v, float))
    if len(ref) == 1:
      return np.zeros_like(v)
    return np.interp(v, ref[order], np.arange(len(ref))[order], left=np.nan, right=np.nan)

  return to_index


PANELS = {"curves": curves_panel, "regimes": regime_panel}


def draw_panels(path: str, title: str, panels: Sequence[Mapping[str, Any]]) -> str:
  """Draws `panels` side by side ({"kind": 'curves' | 'regimes', ...}) under `title`."""
  n = max(1, len(panels))
  fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
  for ax, panel in zip(axes[0], panels, strict=False):
    PANELS[panel.get("kind", "curves")](ax, panel)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path)
