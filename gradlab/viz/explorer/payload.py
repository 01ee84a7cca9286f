"""The data index.html draws: a sweep's runs, cells, panels and theory lines as JSON.

Everything is laid out as the PNG maps are (`gradlab.panels`): x = axes[0], y = axes[1]
(a one-row strip with one axis), a panel per combination of `axes[2:]`. Cells sit at
integer positions (cell i of an axis is centred on i), so every cell has the same size
on the page, as on the PNG maps; a theory line is placed between cells by
`axis_position` (interpolated in log on a log or ordinal axis).

Per cell, every selectable quantity (`QUANTITIES`) is reduced over its runs as the maps
reduce them: the regime and the predicted regime by majority (ties to the worse,
`gradlab.regimes.worst_common_regime`), numbers by their median over finite values
(a cell whose runs are all non-finite is marked non-finite).

The run table is columnar (`RUN_COLUMNS` that exist in the results, plus the axes),
numbers rounded to 4 significant digits, so a 10,000-run sweep stays a few MB.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gradlab.panels import AxisSpec, format_value, fractional_index, split_panels
from gradlab.regimes import REGIME_ORDER, worst_common_regime
from gradlab.viz.maps import REGIME_COLORS, MapLine, PanelLines

# Hover and run-detail columns, in the order they are shown.
RUN_COLUMNS: tuple[str, ...] = (
  "run_id", "seed", "regime", "predicted_regime", "initial_loss", "final_loss",
  "chance_loss", "test_loss", "test_accuracy", "test_map50", "test_cer",
  "initial_grad_norm", "baseline_grad_norm", "max_grad_norm", "final_grad_norm",
  "grad_ratio", "explosion_step", "explosion_layer", "first_nonfinite_step",
  "first_nonfinite_layer", "skipped_steps", "initial_sharpness", "final_sharpness",
  "sharpness_threshold", "update_ratio", "group", "chunk", "process",
)


@dataclass(frozen=True)
class Quantity:
  """One choice of the colour selector: a results column, reduced per cell."""

  key: str
  label: str
  kind: str  # "categorical" (regime labels), "log" or "linear" (numbers)
  column: str


QUANTITIES: tuple[Quantity, ...] = (
  Quantity("regime", "regime", "categorical", "regime"),
  Quantity("final_loss", "final loss", "log", "final_loss"),
  Quantity("test_accuracy", "test accuracy", "linear", "test_accuracy"),
  Quantity("grad_ratio", "max gradient norm / baseline", "log", "grad_ratio"),
  Quantity("predicted_regime", "predicted regime (at init)", "categorical",
           "predicted_regime"),
)


def with_grad_ratio(df: pd.DataFrame) -> pd.DataFrame:
  """`df` with ``grad_ratio`` = max_grad_norm / baseline_grad_norm (the explosion
  detector's ratio; `gradlab.regimes`) where both columns exist."""
  if {"max_grad_norm", "baseline_grad_norm"} <= set(df.columns):
    with np.errstate(divide="ignore", invalid="ignore"):
      ratio = (pd.to_numeric(df["max_grad_norm"], errors="coerce")
               / pd.to_numeric(df["baseline_grad_norm"], errors="coerce"))
    return df.assign(grad_ratio=ratio)
  return df


def available_quantities(df: pd.DataFrame) -> list[Quantity]:
  """The quantities whose column holds at least one value."""
  out = []
  for q in QUANTITIES:
    if q.column not in df:
      continue
    col = df[q.column]
    has = (col.astype(str) != "").any() if q.kind == "categorical" else (
      np.isfinite(pd.to_numeric(col, errors="coerce")).any())
    if has:
      out.append(q)
  return out


def axis_position(spec: AxisSpec, values: Sequence[float]) -> np.ndarray:
  """Fractional cell positions of numeric `values` on an axis drawn one cell per value
  (cell i centred on i): interpolated between neighbouring grid values, in log where
  the axis is log or ordinal with positive values, extrapolated from the end cells."""
  log = spec.scale in ("log", "ordinal") and spec.values[0] > 0
  return fractional_index(spec.values, values, log)


def json_number(x: Any) -> float | None:
  """A finite float rounded to 4 significant digits, or None (JSON null)."""
  try:
    f = float(x)
  except (TypeError, ValueError):
    return None
  if not math.isfinite(f):
    return None
  return float(f"{f:.4g}")


def _json_column(col: pd.Series) -> list[Any]:
  if pd.api.types.is_bool_dtype(col):
    return [bool(v) for v in col]
  if pd.api.types.is_numeric_dtype(col):
    return [json_number(v) for v in col]
  return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
          for v in col]


def _axis_json(name: str, spec: AxisSpec) -> dict[str, Any]:
  return {"name": name, "labels": list(spec.labels), "scale": spec.scale}


def _cell_value(q: Quantity, col: pd.Series) -> Any:
  """One cell's value of `q` from its runs' column (module docstring)."""
  if q.kind == "categorical":
    labels = [str(v) for v in col if str(v) in REGIME_ORDER]
    return REGIME_ORDER.index(worst_common_regime(labels)) if labels else None
  values = pd.to_numeric(col, errors="coerce").to_numpy(float)
  finite = values[np.isfinite(values)]
  if finite.size * 2 <= values.size and q.key == "final_loss":
    return "nonfinite"  # at least half the runs ended non-finite, as on final_loss.png
  return json_number(np.median(finite)) if finite.size else None


def _none_for_nan(v: Any) -> Any:
  """pandas turns a None among numbers into NaN; JSON wants null."""
  return None if isinstance(v, float) and math.isnan(v) else v


def _line_json(line: MapLine, axes: Sequence[str], specs: Sequence[AxisSpec | None]
               ) -> dict[str, Any]:
  keys = list(line.coords)
  out: dict[str, Any] = {"label": line.label, "color": line.color,
                         "dash": "dash" if line.linestyle in ("--", "dashed") else "solid"}
  x_key = axes[0]
  y_key = axes[1] if len(axes) > 1 else None
  if keys == [x_key]:
    out["vertical"] = [json_number(p) for p in axis_position(specs[0], line.coords[x_key])]
  elif keys == [y_key] and specs[1] is not None:
    out["horizontal"] = [json_number(p)
                         for p in axis_position(specs[1], line.coords[y_key])]
  elif y_key is not None and specs[1] is not None and set(keys) == {x_key, y_key}:
    out["x"] = [json_number(p) for p in axis_position(specs[0], line.coords[x_key])]
    out["y"] = [json_number(p) for p in axis_position(specs[1], line.coords[y_key])]
  return out


def build(df: pd.DataFrame, axes: list[str], lines: PanelLines | None = None,
          trajectory_files: Callable[[pd.DataFrame], list[str]] | None = None
          ) -> dict[str, Any]:
  """The JSON payload of index.html (module docstring) for results `df` over `axes`.

  `trajectory_files(df)`: per run, the path (relative to the workdir) of the script
  holding its trajectory, '' where there is none; `lines(panel values)`: the theory lines
  of each panel (`gradlab.viz.overlays.map_lines`)."""
  df = with_grad_ratio(df.reset_index(drop=True))
  df = df.assign(_row=np.arange(len(df)))
  quantities = available_quantities(df)
  x_spec = AxisSpec.of(df[axes[0]])
  y_spec = AxisSpec.of(df[axes[1]]) if len(axes) > 1 else None
  panels = []
  for title, rows in split_panels(df, axes):
    ix = x_spec.index(rows[axes[0]])
    iy = y_spec.index(rows[axes[1]]) if y_spec else np.zeros(len(rows), int)
    grouped = rows.assign(_ix=ix, _iy=iy).groupby(["_ix", "_iy"], sort=True)
    keys = [(int(a), int(b)) for a, b in grouped.size().index]  # the order of every agg
    values = {q.key: [_none_for_nan(v) for v in
                      grouped[q.column].agg(functools.partial(_cell_value, q)).tolist()]
              for q in quantities}
    cell_runs = grouped["_row"].agg(list).tolist()
    panel_values = {a: rows[a].iloc[0] for a in axes[2:]}
    drawn = [_line_json(m, axes, (x_spec, y_spec)) for m in (lines(panel_values) if lines
                                                              else [])]
    panels.append({"title": title, "ix": [k[0] for k in keys], "iy": [k[1] for k in keys],
                   "runs": [[int(r) for r in c] for c in cell_runs], "values": values,
                   "lines": [d for d in drawn if len(d) > 3]})
  runs = {c: _json_column(df[c]) for c in RUN_COLUMNS if c in df.columns and c not in axes}
  runs["trajectory"] = (trajectory_files(df) if trajectory_files else [""] * len(df))
  return {
    "n_runs": len(df),
    "axes": list(axes),
    "x": _axis_json(axes[0], x_spec),
    "y": _axis_json(axes[1], y_spec) if y_spec else None,
    "panels": panels,
    "quantities": [{"key": q.key, "label": q.label, "kind": q.kind} for q in quantities],
    "regimes": list(REGIME_ORDER),
    "regime_colors": [REGIME_COLORS[r] for r in REGIME_ORDER],
    "runs": runs,
    "axis_labels": {a: [format_value(v) for v in df[a]] for a in axes},
  }
