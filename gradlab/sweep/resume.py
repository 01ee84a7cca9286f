"""Resume by point identity: which points of a plan a workdir already holds.

A run is identified by its POINT: the values of the plan's axes and its seed (the
`seed` column: ``train.seed`` plus the replica). A row already written is done for the
plan point with the same identity, wherever that point sits in the grid, so extending or
reordering an axis under ``--resume=force`` runs exactly the points not written yet,
each once. A row written before an axis existed (it has no column for it) is taken to
have the saved config's value of that key.

Run ids stay unique in a workdir: a point still to run keeps its grid position as its
run_id unless an earlier row holds that id, in which case it takes the next free id
above every id in use (`renumber`). Every process reaches the same answer: the done
mask and the ids in use are merged with `gradlab.sweep.mesh.gather_max`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradlab.sweep import grid
from gradlab.sweep import mesh as mesh_lib


def canonical(value: Any) -> Any:
  """A value as an identity component: numbers to 12 significant digits (so a float
  that went through float32 or parquet still matches), other values as they are."""
  if isinstance(value, bool | np.bool_):
    return bool(value)
  if isinstance(value, int | np.integer):
    return int(value)
  if isinstance(value, float | np.floating):
    v = float(value)
    return float(f"{v:.12g}") if np.isfinite(v) else repr(v)
  return value


def point_key(axis_values: Mapping[str, Any], seed: Any, axes: Sequence[str]) -> tuple:
  return (*(canonical(axis_values[k]) for k in axes), canonical(int(seed)))


def row_keys(rows: pd.DataFrame, axes: Sequence[str], saved: Mapping[str, Any]) -> list[tuple]:
  """The identity of every row; an axis the row has no value for takes `saved[key]`
  (the flattened config the workdir was written with)."""
  columns = []
  for key in axes:
    fill = saved.get(key)
    col = rows[key].tolist() if key in rows.columns else [fill] * len(rows)
    columns.append([fill if _missing(v) else v for v in col])
  seeds = (rows["seed"].tolist() if "seed" in rows.columns
           else [saved.get("train.seed", 0)] * len(rows))
  return [(*(canonical(c[i]) for c in columns), canonical(int(seeds[i])))
          for i in range(len(rows))]


def _missing(value: Any) -> bool:
  return value is None or (isinstance(value, float) and np.isnan(value))


def done_mask(plan: grid.Plan, done: pd.DataFrame, saved: Mapping[str, Any]) -> np.ndarray:
  """Which plan run_ids (0..n-1 of the plan's own numbering) have a row of the same
  point in ANY process (the same answer everywhere)."""
  mask = np.zeros(plan.n_points, np.int8)
  if len(done):
    have = set(row_keys(done, plan.axes, saved))
    for group in plan.groups:
      for run_id, values, seed in zip(group.run_ids, group.axis_values, group.seeds,
                                      strict=True):
        if point_key(values, seed, plan.axes) in have:
          mask[run_id] = 1
  return mesh_lib.gather_max(mask).astype(bool)


def ids_in_use(done: pd.DataFrame) -> np.ndarray:
  """The run_ids of the rows written in any process, sorted."""
  local = done["run_id"].to_numpy(np.int64) if len(done) else np.zeros(0, np.int64)
  top = int(mesh_lib.gather_max(np.array([local.max() + 1 if local.size else 0]))[0])
  mask = np.zeros(top, np.int8)
  mask[local] = 1
  return np.flatnonzero(mesh_lib.gather_max(mask))


def renumber(groups: list[grid.Group], in_use: np.ndarray) -> list[grid.Group]:
  """`groups` (the points still to run) with every run_id that an existing row already
  holds replaced by a fresh one, counting up from above every id in use or planned."""
  taken = set(int(i) for i in in_use)
  planned = [r for g in groups for r in g.run_ids]
  nxt = max([*taken, *planned, -1]) + 1
  out = []
  for group in groups:
    ids = []
    for r in group.run_ids:
      if r in taken:
        r, nxt = nxt, nxt + 1
      ids.append(r)
    out.append(_with_ids(group, ids))
  return out


def _with_ids(group: grid.Group, run_ids: list[int]) -> grid.Group:
  new = group.subset(range(len(group)))
  new.run_ids = run_ids
  return new


def todo(plan: grid.Plan, done: pd.DataFrame, saved: Mapping[str, Any]
         ) -> tuple[list[grid.Group], int]:
  """(the non-empty groups of the points not written yet, renumbered where their grid
  position's id is taken; how many plan points are done)."""
  is_done = done_mask(plan, done, saved)
  groups = [g.subset([i for i, r in enumerate(g.run_ids) if not is_done[r]])
            for g in plan.groups]
  groups = renumber([g for g in groups if len(g)], ids_in_use(done))
  return groups, int(is_done.sum())
