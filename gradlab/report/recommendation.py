"""Which optimizer (and remedy) to choose: the section report.md opens with.

For a sweep with an optimizer or remedy axis (`gradlab.report.optimizers.variant_keys`)
every *variant* (one combination of those keys, e.g. "adam" or "sgd | optimizer.clip=1")
is scored on the cells of its part of the map. A cell is one combination of every other
axis; its label is the most common regime of its runs, ties to the worse
(`gradlab.regimes.worst_common_regime`), and it *trains* when that label is trained or
catapult (`gradlab.regimes.TRAINS`: it ended at a trained loss).

- ``share_trained``: the share of the variant's cells that train. With replicas
  (``sweep.replicas``, a ``replica`` column) the same share is computed on each
  replica's own map; ``share_low``/``share_high`` are their smallest and largest.
- ``decades``: per *context* (one combination of the axes other than the variant keys,
  the learning rate and the seed; e.g. one sigma_w), the widest learning-rate range that
  trains: the longest run of consecutive grid learning rates whose cells all train, as
  log10(largest / smallest). One trained cell alone is 0.0 decades; no trained cell is
  "none". ``widest_decades`` is the largest over contexts and ``widest_at`` the contexts
  that reach it.
- ``lr_sensitivity``: Wortsman et al. 2023's LR sensitivity
  (`gradlab.report.sensitivity.lr_sensitivity`) per context, averaged over contexts.
- ``best_metric``: the best value of the first test metric the sweep recorded (`METRICS`,
  each with its direction) over the variant's runs, and where it was reached.

Ranking rule (`RANKING_RULE`): more cells that train first; then the wider trained
learning-rate range; then the lower LR sensitivity; then the better test metric. Two
variants are *tied* when their share is the same or, with replicas, when their
per-replica ranges overlap: the ranking between them is not settled by the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.panels import format_value
from gradlab.regimes import TRAINS, worst_common_regime
from gradlab.report import optimizers
from gradlab.report.markdown import markdown_table
from gradlab.report.sensitivity import lr_sensitivity

LR = optimizers.LR
SEED_COLUMNS = ("train.seed", "replica")
# Test metrics in the order they are looked for; True where higher is better.
METRICS: dict[str, bool] = {
  "test_accuracy": True,
  "test_map50": True,
  "test_mean_iou": True,
  "test_cer": False,
  "test_loss": False,
}
RANKING_RULE = ("Ranked by the share of the variant's cells that train (regime trained or "
                "catapult); ties broken by the widest learning-rate range that trains, then "
                "by the lower LR sensitivity, then by the better test metric.")
LEADING = 3


def applies(axes: Sequence[str]) -> bool:
  """True for a sweep with an optimizer or remedy axis."""
  return bool(optimizers.variant_keys(axes))


def context_axes(axes: Sequence[str]) -> list[str]:
  """The axes a variant's map is spread over, apart from the learning rate and seeds."""
  keys = set(optimizers.variant_keys(axes))
  return [a for a in axes if a not in keys and a != LR and a not in SEED_COLUMNS]


def metric_column(df: pd.DataFrame) -> str | None:
  """The first column of `METRICS` with a finite value, or None."""
  for name in METRICS:
    if name in df and np.isfinite(pd.to_numeric(df[name], errors="coerce")).any():
      return name
  return None


def widest_trained_range(lrs: Sequence[float], trains: Sequence[bool]) -> float:
  """log10(hi / lo) of the longest run of consecutive learning rates (sorted) whose cells
  all train; NaN when none does. Runs of equal length: the one spanning more decades."""
  order = np.argsort(np.asarray(lrs, float))
  lr = np.asarray(lrs, float)[order]
  ok = np.asarray(trains, bool)[order]
  best, start = math.nan, None
  for i in range(len(lr) + 1):
    if i < len(lr) and ok[i]:
      start = i if start is None else start
      continue
    if start is not None:
      span = float(np.log10(lr[i - 1] / lr[start]))
      best = span if math.isnan(best) else max(best, span)
      start = None
  return best


def _cells(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
  return df.groupby(by, dropna=False)["regime"].agg(worst_common_regime).reset_index()


def _context_title(contexts: Sequence[str], row: pd.Series) -> str:
  return ", ".join(f"{_short(a)}={format_value(row[a])}" for a in contexts) or "all"


def _short(axis: str) -> str:
  return axis.rsplit(".", 1)[-1]


def recommendation_table(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """One row per variant, ranked (see the module docstring): variant, rank, tied_with,
  cells, share_trained, share_low, share_high, widest_decades, widest_at, decades (dict
  context -> decades), lr_sensitivity, metric, best_metric, best_at."""
  axes = list(axes)
  d = optimizers.with_variant(df, axes)
  contexts = context_axes(axes)
  cell_keys = [*contexts, *([LR] if LR in axes else [])]
  metric = metric_column(d)
  rows = []
  for variant, g in d.groupby("variant", sort=True):
    cells = _cells(g, cell_keys) if cell_keys else pd.DataFrame(
      {"regime": [worst_common_regime(g["regime"])]})
    trains = cells["regime"].isin(TRAINS)
    low = high = math.nan
    if "replica" in g and g["replica"].nunique() > 1:
      shares = [(_cells(r, cell_keys)["regime"].isin(TRAINS)).mean()
                for _, r in g.groupby("replica")] if cell_keys else []
      low, high = (min(shares), max(shares)) if shares else (math.nan, math.nan)
    decades, sens = _per_context(g, cells, contexts)
    finite = [v for v in decades.values() if not math.isnan(v)]
    widest = max(finite) if finite else math.nan
    rows.append({
      "variant": variant, "cells": len(cells), "share_trained": float(trains.mean()),
      "share_low": low, "share_high": high, "decades": decades,
      "widest_decades": widest,
      "widest_at": [c for c, v in decades.items() if finite and v == widest],
      "lr_sensitivity": float(np.mean(sens)) if sens else math.nan,
      "metric": metric, **_best_metric(g, metric, axes),
    })
  table = pd.DataFrame(rows)
  if table.empty:
    return table
  higher = METRICS.get(metric, True) if metric else True
  key = pd.DataFrame({
    "share": -table["share_trained"],
    "decades": -table["widest_decades"].fillna(-np.inf),
    "sens": table["lr_sensitivity"].fillna(np.inf),
    "metric": (-table["best_metric"] if higher else table["best_metric"]).fillna(np.inf),
  })
  order = key.sort_values(list(key.columns), kind="stable").index
  table = table.loc[order].reset_index(drop=True)
  table.insert(1, "rank", np.arange(1, len(table) + 1))
  table.insert(2, "tied_with", [_ties(table, i) for i in range(len(table))])
  return table


def _per_context(g: pd.DataFrame, cells: pd.DataFrame, contexts: list[str]
                 ) -> tuple[dict[str, float], list[float]]:
  """Decades of trained learning rate and LR sensitivity per context of one variant."""
  if LR not in cells:
    return {}, []
  decades: dict[str, float] = {}
  groups = cells.groupby(contexts, dropna=False, sort=True) if contexts else [((), cells)]
  for _, c in groups:
    title = _context_title(contexts, c.iloc[0])
    decades[title] = widest_trained_range(c[LR], c["regime"].isin(TRAINS))
  sens = []
  if {"final_loss", "initial_loss"} <= set(g.columns):
    runs = g.groupby(contexts, dropna=False) if contexts else [((), g)]
    sens = [lr_sensitivity(r[LR], r["final_loss"], r["initial_loss"]) for _, r in runs]
  return decades, sens


def _best_metric(g: pd.DataFrame, metric: str | None, axes: list[str]) -> dict:
  if metric is None:
    return {"best_metric": math.nan, "best_at": ""}
  values = pd.to_numeric(g[metric], errors="coerce").to_numpy(float)
  values = np.where(np.isfinite(values), values, np.nan)
  if np.all(np.isnan(values)):
    return {"best_metric": math.nan, "best_at": ""}
  i = int(np.nanargmax(values) if METRICS[metric] else np.nanargmin(values))
  keys = [a for a in axes if a not in optimizers.variant_keys(axes) and a != "train.seed"]
  where = ", ".join(f"{_short(a)}={format_value(g.iloc[i][a])}" for a in keys)
  return {"best_metric": float(values[i]), "best_at": where}


def _ties(table: pd.DataFrame, i: int) -> list[str]:
  """Variants whose share of trained cells cannot be told apart from row i's."""
  def interval(j: int) -> tuple[float, float]:
    r = table.iloc[j]
    if math.isnan(r["share_low"]):
      return r["share_trained"], r["share_trained"]
    return r["share_low"], r["share_high"]

  lo, hi = interval(i)
  return [table.iloc[j]["variant"] for j in range(len(table))
          if j != i and interval(j)[0] <= hi and lo <= interval(j)[1]]


def section(df: pd.DataFrame, axes: Sequence[str]) -> list[str]:
  """Markdown lines of report.md's opening "Which optimizer to choose" section; [] when
  the sweep has no optimizer or remedy axis."""
  if not applies(axes) or df.empty:
    return []
  table = recommendation_table(df, axes)
  replicas = bool(table["share_low"].notna().any())
  lines = ["## Which optimizer to choose", "", _verdict(table), "",
           RANKING_RULE + " " + _uncertainty_note(replicas), "", *_sentences(table), ""]
  metric = table["metric"].iloc[0]
  header = ["rank", "variant", "share of cells that train"
            + (" (replica range)" if replicas else ""),
            "widest trained lr range (decades)", "LR sensitivity",
            f"best {metric}" if metric else "best test metric", "tied with"]
  rows = [[r["rank"], r["variant"], _share_text(r), _decades_text(r),
           _num(r["lr_sensitivity"]), _metric_text(r), ", ".join(r["tied_with"]) or "-"]
          for _, r in table.iterrows()]
  lines += markdown_table(header, rows)
  contexts = sorted({c for d in table["decades"] for c in d}, key=_context_sort(table))
  if len(contexts) > 1:
    lines += ["", "Widest learning-rate range that trains, in decades, per "
              + ", ".join(f"`{a}`" for a in context_axes(axes)) + " ('none': no cell "
              "trains; 0.0: a single learning rate does):", "",
              *markdown_table(["variant", *contexts],
                              [[r["variant"], *(_decade(r["decades"].get(c, math.nan))
                                                for c in contexts)]
                               for _, r in table.iterrows()])]
  return [*lines, ""]


def _context_sort(table: pd.DataFrame):
  order = {c: i for d in table["decades"] for i, c in enumerate(d)}
  return lambda c: order.get(c, 0)


def _verdict(table: pd.DataFrame) -> str:
  """The one-line answer: the leading variant, or the variants tied for the lead."""
  top = table.iloc[0]
  if top["share_trained"] == 0:
    return "**No variant trains anywhere on this map**; widen the grid or add a remedy."
  if len(table) == 1:
    return f"**Only one variant was swept: {top['variant']}.**"
  if top["tied_with"]:
    names = _joined([top["variant"], *top["tied_with"]])
    return (f"**No single choice: {names} are tied** on the share of the map that trains; "
            f"{top['variant']} leads on the tie-breakers below.")
  text = (f"**Recommended: {top['variant']}**: more of this map trains with it "
          f"({_share_text(top)} of its cells) than with any other variant swept "
          f"(next: {table.iloc[1]['variant']}, {_share_text(table.iloc[1])}).")
  return text + _best_elsewhere(table)


def _best_elsewhere(table: pd.DataFrame) -> str:
  """A sentence when the best test metric belongs to another variant than the leader."""
  metric = table["metric"].iloc[0]
  if not metric or table["best_metric"].isna().all():
    return ""
  values = table["best_metric"].fillna(-np.inf if METRICS[metric] else np.inf)
  best = table.iloc[int(values.idxmax() if METRICS[metric] else values.idxmin())]
  if best["variant"] == table.iloc[0]["variant"]:
    return f" It also reached the best {metric}."
  return (f" The best {metric} was reached by {best['variant']} "
          f"({best['best_metric']:.4g} against {table.iloc[0]['best_metric']:.4g}).")


def _uncertainty_note(replicas: bool) -> str:
  if replicas:
    return ("Each share is also computed on each replica's own map (one seed per cell); "
            "variants whose replica ranges overlap are tied.")
  return ("One seed per cell: a difference of a few cells can be seed noise, and only "
          "equal shares are marked as ties; rerun with `--config.sweep.replicas=3` to "
          "see the spread.")


def _sentences(table: pd.DataFrame) -> list[str]:
  """One plain sentence per leading variant (and the last, for contrast)."""
  shown = list(range(min(LEADING, len(table))))
  if len(table) > LEADING:
    shown.append(len(table) - 1)
  out = []
  for i in shown:
    r = table.iloc[i]
    text = f"- **{r['variant']}** (rank {r['rank']}) trains in {_share_text(r)} of its cells"
    if not math.isnan(r["widest_decades"]):
      at = _joined(r["widest_at"])
      text += (f"; its widest learning-rate range that trains spans "
               f"{r['widest_decades']:.1f} decades" + (f" (at {at})" if at != "all" else ""))
    elif r["decades"]:
      text += "; no learning rate trains"
    if not math.isnan(r["best_metric"]):
      text += f"; best {r['metric']} {r['best_metric']:.4g} ({r['best_at']})"
    if r["tied_with"]:
      text += f"; tied with {_joined(r['tied_with'])}"
    out.append(text + ".")
  return out


def _joined(items: Sequence[str]) -> str:
  items = list(items)
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _share_text(r: pd.Series) -> str:
  text = f"{100 * r['share_trained']:.0f}%"
  if math.isnan(r["share_low"]):
    return text
  return f"{text} ({100 * r['share_low']:.0f}-{100 * r['share_high']:.0f}%)"


def _decades_text(r: pd.Series) -> str:
  return "-" if not r["decades"] else _decade(r["widest_decades"])


def _decade(v: float) -> str:
  return "none" if math.isnan(v) else f"{v:.1f}"


def _num(v: float) -> str:
  return "-" if math.isnan(v) else f"{v:.4f}"


def _metric_text(r: pd.Series) -> str:
  return "-" if math.isnan(r["best_metric"]) else f"{r['best_metric']:.4f} ({r['best_at']})"
