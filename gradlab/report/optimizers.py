"""Optimizer (and remedy) comparison: the tables of report.md's "Optimizers" section.

A *variant* is one combination of the swept chain keys (optimizer name, remedies,
schedule, clip threshold), e.g. "adam" or "adam | optimizer.remedies=global_norm".
A cell (variant, sigma_w, learning rate) is *stable* when its most common regime
(ties to the worse, as on the regime map) is ``trained``, ``catapult`` or ``stalled``:
it neither exploded nor diverged. The *largest stable learning rate* of a variant at a sigma_w is
the largest learning rate of the grid whose cell is stable (`stable_lr`; drawn by
`gradlab.viz.lr_summary.stable_lr_plot`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.panels import format_value
from gradlab.regimes import STABLE, TRAINS, worst_common_regime
from gradlab.report.markdown import markdown_table

LR = "optimizer.learning_rate"
SIGMA = "init.sigma_w"
CHAIN_KEYS = ("optimizer.name", "optimizer.remedies", "optimizer.schedule", "optimizer.clip")


def variant_keys(axes: Sequence[str]) -> list[str]:
  return [k for k in CHAIN_KEYS if k in axes]


def applies(axes: Sequence[str]) -> bool:
  """True for a sweep with an optimizer (or remedy) axis and a learning-rate axis."""
  return bool(variant_keys(axes)) and LR in axes


def _variant_label(keys: Sequence[str], row: pd.Series) -> str:
  parts = [str(row[k]) if k == "optimizer.name" else f"{k}={format_value(row[k])}"
           for k in keys]
  return " | ".join(p for p in parts if p not in ("optimizer.remedies=",))


def with_variant(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """A copy of `df` with a ``variant`` column (see the module docstring)."""
  label = functools.partial(_variant_label, variant_keys(axes))
  out = df.copy()
  out["variant"] = out.apply(label, axis=1) if len(out) else []
  return out


def stable_lr(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """Rows (variant, sigma_w, largest_stable_lr, largest_trained_lr): the largest
  learning rate whose cell neither explodes nor diverges, and the largest whose cell
  trains; NaN where none does. A stable cell need not train: at a large sigma_w every
  cell may be stalled (chaotic), which makes the stable rate large where nothing
  trains, so the two are reported side by side."""
  d = with_variant(df, axes)
  by = ["variant", SIGMA] if SIGMA in axes else ["variant"]
  cells = d.groupby([*by, LR])["regime"].agg(worst_common_regime).reset_index()
  cells["stable_lr"] = np.where(cells["regime"].isin(STABLE), cells[LR], np.nan)
  cells["trained_lr"] = np.where(cells["regime"].isin(TRAINS), cells[LR], np.nan)
  out = cells.groupby(by)[["stable_lr", "trained_lr"]].max().reset_index()
  return out.rename(columns={"stable_lr": "largest_stable_lr",
                             "trained_lr": "largest_trained_lr"})


def optimizer_section(df: pd.DataFrame, axes: Sequence[str]) -> str:
  """Markdown: per variant (and sigma_w), the largest learning rate that trains and the
  largest that does not blow up. The ranking of the variants opens report.md
  (`gradlab.report.recommendation`)."""
  lines = ["## Optimizers", "",
           "Per variant and sigma_w: the largest swept learning rate whose cell trains "
           "(regime trained or catapult: it ended trained), and the largest whose cell "
           "neither explodes nor diverges (trained, catapult or stalled: a stalled cell is "
           "not exploding, but it does not train either); 'none' where no learning rate "
           "does.", ""]
  lines += _stable_lr_tables(stable_lr(df, axes), axes)
  return "\n".join(lines) + "\n"


def _stable_lr_tables(table: pd.DataFrame, axes: Sequence[str]) -> list[str]:
  """The largest learning rate that trains / that neither explodes nor diverges, per
  variant (and per sigma_w when swept)."""
  def pair(row: pd.Series) -> str:
    return f"{_lr_text(row['largest_trained_lr'])} / {_lr_text(row['largest_stable_lr'])}"

  heading = ["### Largest learning rate that trains / that does not blow up", ""]
  if SIGMA in axes:
    sigmas = sorted(table[SIGMA].unique())
    header = ["variant", *[f"sigma_w={format_value(s)}" for s in sigmas]]
    rows = []
    for variant, g in table.groupby("variant", sort=True):
      lookup = {r[SIGMA]: pair(r) for _, r in g.iterrows()}
      rows.append([variant, *[lookup.get(s, "none / none") for s in sigmas]])
    return [*heading, *markdown_table(header, rows)]
  return [*heading, *markdown_table(["variant", "trains / does not blow up"],
                                    [[r["variant"], pair(r)] for _, r in table.iterrows()])]


def _lr_text(value: float) -> str:
  return "none" if not np.isfinite(value) else format_value(value)
