"""Optimizer (and remedy) comparison: tables for report.md and the stable-lr figure.

A *variant* is one combination of the swept chain keys (optimizer name, remedies,
schedule, clip threshold), e.g. "adam" or "adam | optimizer.remedies=global_norm".
A cell (variant, sigma_w, learning rate) is *stable* when its most common regime
(ties to the worse, as on the regime map) is ``trained`` or ``stalled``: it neither
exploded nor diverged. The *largest stable learning rate* of a variant at a sigma_w is
the largest learning rate of the grid whose cell is stable.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gradlab import regimes  # noqa: E402
from gradlab.plots import format_value, is_log_spaced, worst_common_regime  # noqa: E402
from gradlab.report import markdown_table  # noqa: E402

LR = "optimizer.learning_rate"
SIGMA = "init.sigma_w"
CHAIN_KEYS = ("optimizer.name", "optimizer.remedies", "optimizer.schedule", "optimizer.clip")
STABLE = regimes.STABLE


def variant_keys(axes: Sequence[str]) -> list[str]:
  return [k for k in CHAIN_KEYS if k in axes]


def applies(axes: Sequence[str]) -> bool:
  """True for a sweep with an optimizer (or remedy) axis and a learning-rate axis."""
  return bool(variant_keys(axes)) and LR in axes


def with_variant(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  keys = variant_keys(axes)

  def label(row: pd.Series) -> str:
    parts = [str(row[k]) if k == "optimizer.name" else f"{k}={format_value(row[k])}"
             for k in keys]
    return " | ".join(p for p in parts if p not in ("optimizer.remedies=",))

  out = df.copy()
  out["variant"] = out.apply(label, axis=1) if len(out) else []
  return out


def stable_lr(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """Rows (variant, sigma_w, largest_stable_lr); NaN where no learning rate is stable."""
  d = with_variant(df, axes)
  by = ["variant", SIGMA] if SIGMA in axes else ["variant"]
  cells = d.groupby([*by, LR])["regime"].agg(worst_common_regime).reset_index()
  cells["stable_lr"] = np.where(cells["regime"].isin(STABLE), cells[LR], np.nan)
  return cells.groupby(by)["stable_lr"].max().reset_index(name="largest_stable_lr")


def optimizer_section(df: pd.DataFrame, axes: Sequence[str]) -> str:
  """Markdown: per variant, fraction trained, best test accuracy, largest stable lr."""
  d = with_variant(df, axes)
  lines = ["## Optimizers", "",
           "Stable = the cell's regime is trained or stalled (it neither exploded nor "
           "diverged); the largest stable learning rate is the largest swept learning "
           "rate whose cell is stable.", ""]
  rows = []
  for variant, g in d.groupby("variant", sort=True):
    acc = g["test_accuracy"] if "test_accuracy" in g else pd.Series(dtype=float)
    if acc.notna().any():
      best = g.loc[acc.idxmax()]
      where = ", ".join(f"{k}={format_value(best[k])}" for k in (SIGMA, LR) if k in axes)
      best_text = f"{best['test_accuracy']:.4f} ({where})"
    else:
      best_text = "n/a"
    rows.append([variant, f"{(g['regime'] == 'trained').mean():.2f}", best_text, len(g)])
  lines += markdown_table(["variant", "fraction trained", "best test accuracy", "runs"], rows)
  table = stable_lr(df, axes)
  if SIGMA in axes:
    sigmas = sorted(table[SIGMA].unique())
    header = ["variant", *[f"sigma_w={format_value(s)}" for s in sigmas]]
    rows = []
    for variant, g in table.groupby("variant", sort=True):
      lookup = dict(zip(g[SIGMA], g["largest_stable_lr"], strict=True))
      rows.append([variant, *[_lr_text(lookup.get(s, np.nan)) for s in sigmas]])
    lines += ["", "### Largest stable learning rate per sigma_w", ""]
    lines += markdown_table(header, rows)
  else:
    lines += ["", "### Largest stable learning rate", ""]
    lines += markdown_table(["variant", "largest stable lr"],
                            [[v, _lr_text(x)] for v, x in zip(table["variant"],
                                                              table["largest_stable_lr"],
                                                              strict=True)])
  return "\n".join(lines) + "\n"


def _lr_text(value: float) -> str:
  return "none" if not np.isfinite(value) else format_value(value)


def stable_lr_plot(df: pd.DataFrame, axes: Sequence[str], path: str) -> str:
  """The largest stable learning rate against sigma_w, one line per variant."""
  table = stable_lr(df, axes)
  fig, ax = plt.subplots(figsize=(7.2, 4.8))
  x_key = SIGMA if SIGMA in axes else None
  variants = sorted(table["variant"].unique())
  heads = sorted({v.split(" | ")[0] for v in variants})
  tails = sorted({" | ".join(v.split(" | ")[1:]) for v in variants})
  colors = plt.get_cmap("tab10" if len(heads) <= 10 else "tab20")
  styles = ["-", "--", ":", "-."]
  for variant, g in table.groupby("variant", sort=True):
    head, _, tail = variant.partition(" | ")
    xs = g[x_key].to_numpy(float) if x_key else np.zeros(len(g))
    ax.plot(xs, g["largest_stable_lr"].to_numpy(float), marker="o", label=variant,
            color=colors(heads.index(head) % colors.N),
            linestyle=styles[tails.index(tail) % len(styles)])
  ax.set_yscale("log")
  if x_key:
    values = sorted(df[SIGMA].unique())
    if is_log_spaced(values):
      ax.set_xscale("log")
    ax.set_xticks(values, [format_value(v) for v in values])
    ax.minorticks_off()
  ax.set_xlabel(x_key or "")
  ax.set_ylabel("largest stable learning rate")
  ax.set_title("largest stable learning rate (missing: none stable)")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), handlelength=3.5)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path
