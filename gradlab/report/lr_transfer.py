"""Learning-rate transfer across width: the best learning rate per width, per
parameterization and optimizer (report.md's "Learning-rate transfer" section; drawn by
`gradlab.viz.lr_transfer`).

Applies to a sweep with ``model.width`` and ``optimizer.learning_rate`` axes. A *curve*
is one (parameterization, optimizer variant, other static axes) at one width: the
median final loss over the runs of each learning rate (replicas and any other traced
axes pooled), a diverged run counting as +inf. The *best learning rate* of a curve is
the grid learning rate with the lowest median final loss. A parameterization
*transfers* when the best learning rates of all its widths lie within one grid step of
each other (Yang et al. 2022, "Tensor Programs V", Fig. 1: muP's optimum stays put
while standard's shifts); the *drift* is log2(best lr at the largest width / best lr at
the smallest), and the *spread* the log2 range of the best learning rates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.report.markdown import markdown_table

WIDTH = "model.width"
LR = "optimizer.learning_rate"
PARAMETERIZATION = "parameterization"
CURVE_KEYS = ("optimizer.name", "optimizer.remedies", "optimizer.eps", "init.sigma_w")


def applies(axes: Sequence[str]) -> bool:
  return WIDTH in axes and LR in axes


def curve_keys(axes: Sequence[str]) -> list[str]:
  """What tells curves apart besides the width: the parameterization, and the optimizer
  axes of `CURVE_KEYS` that the sweep has."""
  return [PARAMETERIZATION, *(k for k in CURVE_KEYS if k in axes)]


def loss_curves(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """Rows (curve keys..., width, lr, median_final_loss, runs); non-finite final losses
  count as +inf."""
  d = df.copy()
  if PARAMETERIZATION not in d:
    d[PARAMETERIZATION] = "standard"
  d["loss"] = np.where(np.isfinite(d["final_loss"]), d["final_loss"], np.inf)
  keys = [*curve_keys(axes), WIDTH, LR]
  out = d.groupby(keys, dropna=False)["loss"].agg(median_final_loss="median",
                                                 runs="size").reset_index()
  return out.sort_values(keys).reset_index(drop=True)


def best_lr(curves: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
  """Rows (curve keys..., width, best_lr, best_loss); best_lr NaN where every learning
  rate diverged."""
  rows = []
  for key, c in curves.groupby([*curve_keys(axes), WIDTH], dropna=False):
    finite = c[np.isfinite(c["median_final_loss"])]
    best = finite.loc[finite["median_final_loss"].idxmin()] if len(finite) else None
    rows.append((*key, np.nan if best is None else float(best[LR]),
                 np.nan if best is None else float(best["median_final_loss"])))
  return pd.DataFrame(rows, columns=[*curve_keys(axes), WIDTH, "best_lr", "best_loss"])


def grid_step_log2(values: Sequence[float]) -> float:
  """The learning-rate grid's step in log2 units (the median spacing)."""
  v = np.log2(np.unique(np.asarray(values, float)))
  return float(np.median(np.diff(v))) if len(v) > 1 else float("nan")


def transfer_summary(best: pd.DataFrame, axes: Sequence[str], step: float) -> pd.DataFrame:
  """Per curve (without width): the widths, the drift and spread of log2(best lr), and
  whether the spread is within one grid step (`step`, log2 units)."""
  rows = []
  for key, b in best.groupby(curve_keys(axes), dropna=False):
    b = b.sort_values(WIDTH)
    lrs = np.log2(b["best_lr"].to_numpy(float))
    ok = np.isfinite(lrs)
    drift = float(lrs[ok][-1] - lrs[ok][0]) if ok.sum() >= 2 else np.nan
    spread = float(np.ptp(lrs[ok])) if ok.sum() >= 2 else np.nan
    rows.append((*key, f"{int(b[WIDTH].min())}-{int(b[WIDTH].max())}", drift, spread,
                 bool(spread <= step + 1e-9) if np.isfinite(spread) else False))
  return pd.DataFrame(rows, columns=[*curve_keys(axes), "widths", "drift_log2",
                                     "spread_log2", "within_one_step"])


def transfer_section(df: pd.DataFrame, axes: Sequence[str]) -> str:
  """report.md's section: the best learning rate per width, and the transfer summary."""
  curves = loss_curves(df, axes)
  best = best_lr(curves, axes)
  step = grid_step_log2(df[LR])
  summary = transfer_summary(best, axes, step)
  keys = curve_keys(axes)
  wide = best.pivot_table(index=keys, columns=WIDTH, values="best_lr", dropna=False)
  wide.columns = [f"width {int(w)}" for w in wide.columns]
  wide = wide.reset_index()
  for col in wide.columns[len(keys):]:
    wide[col] = [("all diverged" if not np.isfinite(v) else f"{v:.3g}") for v in wide[col]]
  sentences = []
  for _, r in summary.iterrows():
    name = " ".join(str(r[k]) for k in keys)
    if not np.isfinite(r["spread_log2"]):
      sentences.append(f"- {name}: fewer than two widths have a finite best learning rate.")
      continue
    verdict = ("stays within one grid step" if r["within_one_step"]
               else "moves by more than one grid step")
    sentences.append(f"- {name}: the best learning rate {verdict} across widths "
                     f"{r['widths']} (spread {r['spread_log2']:.1f}, drift "
                     f"{r['drift_log2']:+.1f} in log2 units; grid step {step:.1f}).")
  table = summary.copy()
  table["drift_log2"] = [f"{v:+.1f}" if np.isfinite(v) else "-" for v in table["drift_log2"]]
  table["spread_log2"] = [f"{v:.1f}" if np.isfinite(v) else "-" for v in table["spread_log2"]]
  table["within_one_step"] = ["yes" if v else "no" for v in table["within_one_step"]]
  return "\n".join([
    "## Learning-rate transfer", "",
    "Best learning rate (lowest median final loss; diverged runs count as +inf) per width "
    "(`lr_transfer.png` draws the curves):", "",
    *_table(wide), "",
    f"Drift = log2(best lr at the largest width / at the smallest); spread = the log2 "
    f"range of the best learning rates; one grid step = {step:.1f} (log2).", "",
    *_table(table), "", *sentences, ""])


def _table(frame: pd.DataFrame) -> list[str]:
  return markdown_table([str(c) for c in frame.columns], frame.values.tolist())
