"""Two sweeps of one grid, cell by cell: which cells changed regime, and how.

Compares sweep A (the reference: no remedy, an old commit) with sweep B (a remedy, a
new commit). Both must sweep the same axes in the same order over the same values
(`check_same_grid`; numbers equal to a relative `REL_TOL`); then each cell (one
combination of axis values, as in `gradlab.panels`) gets A's and B's regime, each the
majority label of its runs with ties to the worse (`gradlab.panels.cell_regimes`).

A changed cell's direction follows `gradlab.regimes.REGIME_ORDER` (best to worst):
"better" when B's label comes earlier than A's, "worse" when later. The order alone
puts trained -> stalled and trained -> diverged side by side, so a change across the
stable set (`gradlab.regimes.STABLE`: trained, catapult, stalled) is also named as a
`flip`: "stable->unstable" (B exploded or diverged where A did not) or
"unstable->stable". A cell run in one sweep only (a partial sweep) is kept, with
`present` "A only" or "B only", and counted apart, never compared.

Reading a folder (`load_sweep`) is the only I/O here; everything else is pandas.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from gradlab import results
from gradlab.panels import cell_regimes, format_value
from gradlab.regimes import REGIME_ORDER, STABLE
from gradlab.registry import ConfigError

REL_TOL = 1e-6  # numeric axis values closer than this (relative) are the same value
TO_UNSTABLE = "stable->unstable"
TO_STABLE = "unstable->stable"
BOTH, A_ONLY, B_ONLY = "both", "A only", "B only"
MAX_LISTED = 3  # axis values named in a mismatch message, per side


@dataclass(frozen=True)
class Sweep:
  """One sweep folder: its name (the folder's), its grid (axis -> configured values, in
  axis order) and its finished runs (`gradlab.results.load`)."""

  name: str
  workdir: str
  grid: Mapping[str, tuple[Any, ...]]
  runs: pd.DataFrame


class CompareCounts(NamedTuple):
  """Cell counts of a comparison. `cells`: run in both sweeps; `changed` = `better` +
  `worse` of them; `to_unstable` / `to_stable`: the changed cells that crossed the
  stable set; `only_a` / `only_b`: run in one sweep only (not compared)."""

  cells: int
  changed: int
  better: int
  worse: int
  to_unstable: int
  to_stable: int
  only_a: int
  only_b: int


@dataclass(frozen=True)
class Comparison:
  """The cell-by-cell comparison of two sweeps.

  cells: one row per cell of either sweep, in axis-value order: the axes, then
    regime_a, regime_b (None where the cell was not run), n_runs_a, n_runs_b (0 there),
    uncertain_a, uncertain_b (fewer than all its runs agree), present ("both", "A only",
    "B only"), changed (bool), direction ("better", "worse", "same"; "" unless both) and
    flip ("stable->unstable", "unstable->stable" or "").
  transitions: counts of cells run in both, index regime in A, columns regime in B,
    over the regimes seen in either (in `REGIME_ORDER`); it sums to `counts.cells`.
  """

  axes: tuple[str, ...]
  cells: pd.DataFrame
  transitions: pd.DataFrame
  counts: CompareCounts


def load_sweep(workdir: str) -> Sweep:
  """The sweep in folder `workdir`, or a one-line ConfigError when it is not a grid
  sweep with finished runs (no folder, no config.json, a boundary search, no axes, no
  runs yet)."""
  if not os.path.isdir(workdir):
    what = "is not a folder" if os.path.exists(workdir) else "does not exist"
    raise ConfigError(f"'{workdir}' {what}; give a sweep folder (a --workdir of "
                      f"experiments.sweep)")
  meta = results.read_config(workdir)
  if meta.get("mode") == "boundary":
    raise ConfigError(f"'{workdir}' is a boundary search, not a grid sweep; compare needs "
                      f"two grid sweeps")
  axes = [str(a) for a in meta.get("axes", [])]
  if not axes:
    raise ConfigError(f"'{workdir}' sweeps no axes; there are no cells to compare")
  runs = results.load(workdir)
  if runs.empty:
    raise ConfigError(f"'{workdir}' holds no finished runs yet; nothing to compare")
  missing = [a for a in (*axes, "regime") if a not in runs.columns]
  if missing:
    raise ConfigError(f"the results of '{workdir}' lack column(s) {missing}; the folder "
                      f"is not a complete gradlab sweep")
  configured = meta.get("config", {}).get("sweep", {}).get("axes", {}) or {}
  grid = {a: tuple(configured[a]) if isinstance(configured.get(a), list)
          else tuple(pd.unique(runs[a])) for a in axes}
  name = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
  return Sweep(name, workdir, grid, runs)


def _is_number(v: Any) -> bool:
  return (isinstance(v, (int, float, np.integer, np.floating))
          and not isinstance(v, (bool, np.bool_)) and math.isfinite(float(v)))


def _numeric(values: Sequence[Any]) -> bool:
  return len(values) > 0 and all(_is_number(v) for v in values)


def _distinct(values: Sequence[Any]) -> list[Any]:
  """Sorted distinct values; numbers closer than REL_TOL count once."""
  if not _numeric(values):
    return sorted({str(v) for v in values})
  out: list[float] = []
  for v in sorted(float(v) for v in values):
    if not out or not math.isclose(v, out[-1], rel_tol=REL_TOL, abs_tol=0.0):
      out.append(v)
  return out


def _only_in(mine: list[Any], theirs: list[Any]) -> list[Any]:
  if _numeric(mine) and _numeric(theirs):
    return [v for v in mine
            if not any(math.isclose(v, w, rel_tol=REL_TOL, abs_tol=0.0) for w in theirs)]
  return [v for v in mine if v not in theirs]


def _describe(values: list[Any]) -> str:
  """'8 values 1e-4..10', '1 value 0.1', '2 values adam, sgd'."""
  n = f"{len(values)} value{'s' if len(values) != 1 else ''}"
  labels = [format_value(v) for v in values]
  if _numeric(values) and len(values) > 1:
    return f"{n} {labels[0]}..{labels[-1]}"
  shown = labels if len(labels) <= 4 else [*labels[:3], "...", labels[-1]]
  return f"{n} {', '.join(shown)}"


def _listed(values: list[Any]) -> str:
  labels = [format_value(v) for v in values[:MAX_LISTED]]
  more = len(values) - MAX_LISTED
  return ", ".join(labels) + (f" (+{more} more)" if more > 0 else "")


def check_same_grid(a: Mapping[str, Sequence[Any]], b: Mapping[str, Sequence[Any]]) -> None:
  """Raises a one-line ConfigError saying what differs unless grids `a` and `b` (axis ->
  values) sweep the same axes in the same order over the same sets of values."""
  names_a, names_b = list(a), list(b)
  if names_a != names_b:
    if set(names_a) == set(names_b):
      raise ConfigError(f"the sweeps order their axes differently (A: {', '.join(names_a)}; "
                        f"B: {', '.join(names_b)}); their maps would not line up")
    only_a = [n for n in names_a if n not in names_b]
    only_b = [n for n in names_b if n not in names_a]
    parts = ([f"only A sweeps {', '.join(map(repr, only_a))}"] if only_a else []) + (
      [f"only B sweeps {', '.join(map(repr, only_b))}"] if only_b else [])
    raise ConfigError(f"the sweeps differ in their axes: {'; '.join(parts)} (A: "
                      f"{', '.join(names_a)}; B: {', '.join(names_b)})")
  differing = []
  for name in names_a:
    va, vb = _distinct(list(a[name])), _distinct(list(b[name]))
    in_a, in_b = _only_in(va, vb), _only_in(vb, va)
    if in_a or in_b:
      detail = "; ".join(([f"only in A: {_listed(in_a)}"] if in_a else [])
                         + ([f"only in B: {_listed(in_b)}"] if in_b else []))
      differing.append(f"sweeps differ on axis '{name}': A has {_describe(va)}, B has "
                       f"{_describe(vb)} ({detail})")
  if differing:
    more = len(differing) - 1
    raise ConfigError(differing[0] + (f"; and {more} more ax{'is' if more == 1 else 'es'} "
                                      f"differ{'s' if more == 1 else ''}" if more else ""))


def _snap(runs: pd.DataFrame, grid: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
  """`runs` with every numeric axis value replaced by the value of `grid` it equals to
  REL_TOL, so cells of two sweeps meet on exactly equal keys."""
  out = runs.copy()
  for name, values in grid.items():
    ref = np.asarray(_distinct(list(values)), dtype=object)
    if not _numeric(list(ref)) or not pd.api.types.is_numeric_dtype(out[name]):
      continue
    ref = ref.astype(float)
    v = out[name].to_numpy(dtype=float)
    nearest = ref[np.abs(v[:, None] - ref[None, :]).argmin(axis=1)]
    close = np.isclose(v, nearest, rtol=REL_TOL, atol=0.0)
    out[name] = np.where(close, nearest, v)
  return out


def _directions(regime_a: pd.Series, regime_b: pd.Series, both: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
  """Per cell: direction ("better"/"worse"/"same", "" unless `both`) and flip."""
  rank = {r: i for i, r in enumerate(REGIME_ORDER)}
  ra = np.array([rank.get(r, -1) for r in regime_a])
  rb = np.array([rank.get(r, -1) for r in regime_b])
  direction = np.where(rb < ra, "better", np.where(rb > ra, "worse", "same"))
  stable_a, stable_b = regime_a.isin(STABLE).to_numpy(), regime_b.isin(STABLE).to_numpy()
  flip = np.where(stable_a & ~stable_b, TO_UNSTABLE, np.where(~stable_a & stable_b,
                                                              TO_STABLE, ""))
  return np.where(both, direction, ""), np.where(both, flip, "")


def compare_runs(runs_a: pd.DataFrame, runs_b: pd.DataFrame, axes: Sequence[str],
                 grid: Mapping[str, Sequence[Any]] | None = None) -> Comparison:
  """The cell-by-cell comparison of two results frames over `axes` (their grids are
  assumed checked: `check_same_grid`). `grid` (axis -> values; default: A's values)
  is what numeric values are matched against."""
  axes = list(axes)
  grid = grid if grid is not None else {a: tuple(pd.unique(runs_a[a])) for a in axes}
  keep = ["regime", "n_runs", "uncertain"]
  cells_a = cell_regimes(_snap(runs_a, grid), axes)[axes + keep]
  cells_b = cell_regimes(_snap(runs_b, grid), axes)[axes + keep]
  cells = cells_a.merge(cells_b, on=axes, how="outer", suffixes=("_a", "_b"),
                        indicator=True)
  present = cells.pop("_merge").map({"both": BOTH, "left_only": A_ONLY,
                                     "right_only": B_ONLY}).astype(str)
  cells["present"] = present
  for side in ("a", "b"):
    cells[f"regime_{side}"] = cells[f"regime_{side}"].astype(object).where(
      cells[f"regime_{side}"].notna(), None)
    cells[f"n_runs_{side}"] = cells[f"n_runs_{side}"].fillna(0).astype(int)
    cells[f"uncertain_{side}"] = cells[f"uncertain_{side}"].eq(True)
  both = (present == BOTH).to_numpy()
  cells["direction"], cells["flip"] = _directions(cells["regime_a"], cells["regime_b"], both)
  cells["changed"] = both & (cells["direction"] != "same").to_numpy()
  cells = cells.sort_values(axes, kind="stable").reset_index(drop=True)
  common = cells[cells["present"] == BOTH]
  seen = [r for r in REGIME_ORDER if r in set(common["regime_a"]) | set(common["regime_b"])]
  transitions = (pd.crosstab(pd.Categorical(common["regime_a"], seen),
                             pd.Categorical(common["regime_b"], seen), dropna=False)
                 .rename_axis(index="A", columns="B"))
  changed = cells[cells["changed"]]
  counts = CompareCounts(
    cells=len(common), changed=len(changed),
    better=int((changed["direction"] == "better").sum()),
    worse=int((changed["direction"] == "worse").sum()),
    to_unstable=int((changed["flip"] == TO_UNSTABLE).sum()),
    to_stable=int((changed["flip"] == TO_STABLE).sum()),
    only_a=int((cells["present"] == A_ONLY).sum()),
    only_b=int((cells["present"] == B_ONLY).sum()))
  order = ["present", "regime_a", "regime_b", "direction", "flip", "changed", "n_runs_a",
           "n_runs_b", "uncertain_a", "uncertain_b"]
  return Comparison(tuple(axes), cells[axes + order], transitions, counts)


def compare_sweeps(a: Sweep, b: Sweep) -> Comparison:
  """`compare_runs` of two loaded sweeps, after `check_same_grid` (a ConfigError when
  their axes or values differ)."""
  check_same_grid(a.grid, b.grid)
  return compare_runs(a.runs, b.runs, list(a.grid), a.grid)
