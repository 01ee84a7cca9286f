"""How a sweep's results frame splits into panels and cells (pandas and numpy only).

A sweep's results are a DataFrame with one row per run (see `gradlab.results.load`):
one column per swept axis, named by its dotted config key (`init.sigma_w`,
`optimizer.learning_rate`, ...), plus `regime`, `final_loss` and friends. The maps
(`gradlab.viz.maps`) and report.md (`gradlab.report`) both read it the same way:

- `axes[0]` runs along x and `axes[1]` along y of each panel (a single-row strip
  when there is only one axis);
- each combination of values of `axes[2:]` gets its own panel, titled
  "optimizer.name=adam" (`split_panels`).

Runs that share a cell (several seeds: ``sweep.replicas``) are reduced to one value:
the most common regime, ties going to the worse regime (`cell_regimes`, which also
gives the cell's agreement: the share of its runs with that label; a cell is
*uncertain* when fewer than all of them agree), and the median final loss with
non-finite losses counted as +inf (`cell_final_loss`). `near_boundary` marks cells
with a neighbour of a different label; `agreement_summary` counts, per panel, the
uncertain cells and how many of them sit next to such a boundary.

Numeric axes whose values are log-spaced (`is_log_spaced`) are drawn on a log scale,
with cells bounded by geometric midpoints (`cell_edges`) so that every cell has the
same width on the page; numeric axes spaced unevenly (`is_uneven`) are ordinal, one
equal cell per value. String axes are categorical (`AxisSpec`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradlab.regimes import STABLE, check_regimes, worst_common_regime


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


def is_uneven(values: Iterable[float]) -> bool:
  """True for three or more distinct finite numbers spaced neither geometrically nor
  arithmetically (within 10%), e.g. Adam's epsilon 1e-8, 1e-5, 1e-4, 1e-3, 1e-2. A map
  draws such an axis *ordinal*: one equal cell per value, so a value far from the rest
  does not get a cell several times taller than the others."""
  v = np.unique(np.asarray(list(values), dtype=float))
  if v.size < 3 or not np.all(np.isfinite(v)):
    return False
  steps = [np.diff(v)] + ([np.diff(np.log(v))] if v[0] > 0 else [])
  return not any(np.ptp(d) <= 0.1 * np.mean(d) for d in steps)


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


def check_frame(df: pd.DataFrame, axes: Sequence[str], columns: Sequence[str]) -> None:
  """Raises ValueError unless `df` has runs and every column of `axes` and `columns`."""
  if len(axes) == 0:
    raise ValueError("need at least one axis to plot; got axes=[]")
  missing = [c for c in (*axes, *columns) if c not in df.columns]
  if missing:
    raise ValueError(f"missing column(s) {missing}; the frame has {list(df.columns)}")
  if len(df) == 0:
    raise ValueError("the results frame has no runs")


def cell_regimes(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """One row per distinct combination of `axes` values: columns axes + regime, n_runs,
  n_agree, agreement, uncertain, stability_split.

  `regime` is `worst_common_regime` over the cell's runs (e.g. its seeds or replicas);
  `n_agree` counts the runs with that label, `agreement` = n_agree / n_runs, and
  `uncertain` is True when fewer than all runs agree (never for a one-run cell);
  `stability_split` when some runs are stable (`gradlab.regimes.STABLE`) and some not.
  """
  check_frame(df, axes, ("regime",))
  check_regimes(df["regime"])
  grouped = df.groupby(list(axes), dropna=False, sort=False)["regime"]
  out = grouped.agg(worst_common_regime).to_frame("regime")
  out["n_runs"] = grouped.size()
  out["n_agree"] = grouped.agg(lambda runs: int((runs == worst_common_regime(runs)).sum()))
  out["agreement"] = out["n_agree"] / out["n_runs"]
  out["uncertain"] = out["n_agree"] < out["n_runs"]
  out["stability_split"] = grouped.agg(lambda runs: runs.isin(STABLE).nunique() > 1)
  return out.reset_index()


def near_boundary(cells: pd.DataFrame, axes: Sequence[str]) -> np.ndarray:
  """Per row of `cells` (one row per cell: `cell_regimes`), whether a neighbouring cell
  of the same panel has a different `regime`. Neighbours are the cells one axis value
  away along axes[0] or axes[1] (left, right, below, above; no diagonals), by position
  among the sorted distinct values of each axis; cells that were never run do not count.
  """
  check_frame(cells, axes, ("regime",))
  map_axes = list(axes[:2])
  index = np.stack([AxisSpec.of(cells[a]).index(cells[a]) for a in map_axes], axis=1)
  panel = ([tuple(k) for k in cells[list(axes[2:])].astype(str).to_numpy().tolist()]
           if len(axes) > 2 else [()] * len(cells))
  label = dict(zip(((p, *i) for p, i in zip(panel, index.tolist(), strict=True)),
                   cells["regime"], strict=True))
  out = np.zeros(len(cells), bool)
  for row, (p, pos) in enumerate(zip(panel, index.tolist(), strict=True)):
    mine = label[(p, *pos)]
    for dim in range(len(map_axes)):
      for step in (-1, 1):
        other = list(pos)
        other[dim] += step
        out[row] |= label.get((p, *other), mine) != mine
  return out


def agreement_summary(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """Per panel (`split_panels` order) and in total: cells, uncertain cells (fewer than
  all their runs agree), their fraction, uncertain cells next to a boundary
  (`near_boundary`), and all cells next to a boundary (the base rate to compare with).
  Columns: panel, cells, runs_per_cell (min over cells), uncertain, uncertain_fraction,
  stability_split (uncertain cells whose runs disagree on stable vs unstable),
  uncertain_near_boundary, near_boundary."""
  cells = cell_regimes(df, axes)
  cells["near_boundary"] = near_boundary(cells, axes)
  rows = []
  for title, part in [*split_panels(cells, axes), ("total", cells)]:
    uncertain = part["uncertain"].to_numpy(bool)
    near = part["near_boundary"].to_numpy(bool)
    rows.append({"panel": title, "cells": len(part),
                 "runs_per_cell": int(part["n_runs"].min()),
                 "uncertain": int(uncertain.sum()),
                 "uncertain_fraction": float(uncertain.mean()),
                 "stability_split": int(part["stability_split"].sum()),
                 "uncertain_near_boundary": int((uncertain & near).sum()),
                 "near_boundary": int(near.sum())})
  return pd.DataFrame(rows)


def cell_final_loss(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """One row per cell: columns axes + final_loss (median), finite, n_runs.

  Non-finite losses (NaN or +-inf: a diverged run) count as +inf in the median, so a
  cell is non-finite (`finite` False, `final_loss` inf) when at least half of its
  runs did not finish with a finite loss.
  """
  check_frame(df, axes, ("final_loss",))
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
  check_frame(df, axes, ())
  panel_axes = list(axes[2:])
  if not panel_axes:
    return [("all", df)]
  specs = [AxisSpec.of(df[a]) for a in panel_axes]
  keys = np.stack([s.index(df[a]) for s, a in zip(specs, panel_axes, strict=True)], axis=1)
  panels = []
  for key in sorted({tuple(k) for k in keys.tolist()}):
    mask = np.all(keys == np.asarray(key), axis=1)
    title = ", ".join(f"{a}={s.labels[i]}" for a, s, i in zip(panel_axes, specs, key, strict=True))
    panels.append((title, df[mask]))
  return panels


def fractional_index(grid: Sequence[float], values: Sequence[float], log: bool) -> np.ndarray:
  """Positions of `values` on a row of cells centred on 0, 1, ..., n-1, one per sorted
  `grid` value: linear between neighbouring grid values (in log when `log`; values <= 0
  then give NaN), extrapolated from the end cells; all 0 for a one-value grid."""
  v = np.asarray(values, dtype=float)
  ref = np.asarray(grid, dtype=float)
  if ref.size == 1:
    return np.zeros_like(v)
  if log:
    ref = np.log(ref)
    v = np.log(np.where(v > 0, v, np.nan))
  i = np.clip(np.searchsorted(ref, v) - 1, 0, ref.size - 2)
  return i + (v - ref[i]) / (ref[i + 1] - ref[i])


@dataclass(frozen=True)
class AxisSpec:
  """How one axis is laid out: sorted distinct values, scale, cell edges, tick labels."""

  values: tuple
  scale: str  # "log", "linear" or "categorical"
  edges: np.ndarray
  labels: tuple[str, ...]

  @staticmethod
  def of(column: pd.Series) -> AxisSpec:
    numeric = (
      pd.api.types.is_numeric_dtype(column)
      and not pd.api.types.is_bool_dtype(column)
      and bool(np.all(np.isfinite(column.to_numpy(dtype=float))))
    )
    if numeric:
      values = np.unique(column.to_numpy(dtype=float))
      labels = tuple(format_value(v) for v in values)
      if is_uneven(values):
        return AxisSpec(tuple(values.tolist()), "ordinal",
                        np.arange(values.size + 1) - 0.5, labels)
      log = is_log_spaced(values)
      return AxisSpec(tuple(values.tolist()), "log" if log else "linear",
                      cell_edges(values, log), labels)
    labels = tuple(sorted({str(v) for v in column}))
    return AxisSpec(labels, "categorical", np.arange(len(labels) + 1) - 0.5, labels)

  @property
  def centers(self) -> np.ndarray:
    if self.scale in ("categorical", "ordinal"):
      return np.arange(len(self.values), dtype=float)
    return np.asarray(self.values, dtype=float)

  def position(self, values: Sequence[float]) -> np.ndarray:
    """Where numeric `values` sit in the panel's data coordinates: the values themselves
    on a log or linear axis; on an ordinal axis the fractional cell index, interpolated
    between neighbouring grid values (in log where every grid value is > 0) and
    extrapolated from the end cells, so a theory line crosses the cells it should."""
    if self.scale != "ordinal":
      return np.asarray(values, dtype=float)
    return fractional_index(self.values, values, log=self.values[0] > 0)


  def index(self, column: pd.Series) -> np.ndarray:
    """Position of each entry of `column` among `values`."""
    if self.scale == "categorical":
      lookup = {label: i for i, label in enumerate(self.labels)}
      return np.array([lookup[str(v)] for v in column], dtype=int)
    return np.searchsorted(np.asarray(self.values), column.to_numpy(dtype=float))
