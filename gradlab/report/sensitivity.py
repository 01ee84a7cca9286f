"""Learning-rate sensitivity of a sweep with a learning-rate axis (Wortsman et al. 2023).

Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
instabilities", Sec. 3 (their definition of LR sensitivity): for a training algorithm A
run at learning rates eta in a range [a, b], with final loss l(eta) and initial loss l_0,

    LR sensitivity = E_eta [ min(l(eta), l_0) - l* ],   l* = min_eta l(eta),

the expectation over the swept learning rates (uniform over the grid's values). A run
whose final loss is not finite (diverged) counts at l_0, as does any run that ended
above its initial loss; a low number means the loss is close to its best over the whole
range. Here l is ``final_loss`` (the training objective on the eval slice, z-loss term
included where ``train.z_loss > 0``), l_0 is ``initial_loss``, and runs that share every
axis value but the learning rate (several seeds) are averaged per learning rate before
the expectation.

`report_section` adds to report.md one row per combination of the other swept axes
(e.g. with and without qk-layernorm) and, where the sweep recorded the attention probe,
the median ``attn_logit_max_max`` per learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.panels import format_value
from gradlab.report.markdown import markdown_table

LR_AXIS = "optimizer.learning_rate"
LOGIT_COLUMN = "attn_logit_max_max"


def lr_sensitivity(lrs: Sequence[float], final_loss: Sequence[float],
                   initial_loss: Sequence[float]) -> float:
  """E over learning rates of min(l, l_0) - min over learning rates of that, runs at the
  same learning rate averaged first; non-finite final losses count as l_0 (Wortsman et
  al. 2023, Sec. 3)."""
  table = pd.DataFrame({"lr": np.asarray(lrs, float), "loss": capped_loss(final_loss,
                                                                          initial_loss)})
  per_lr = table.groupby("lr")["loss"].mean()
  return float(np.mean(per_lr - per_lr.min()))


def capped_loss(final_loss: Sequence[float], initial_loss: Sequence[float]) -> np.ndarray:
  """min(l, l_0), with a non-finite l replaced by l_0."""
  final = np.asarray(final_loss, float)
  l0 = np.asarray(initial_loss, float)
  return np.where(np.isfinite(final), np.minimum(final, l0), l0)


def sensitivity_table(df: pd.DataFrame, axes: Sequence[str], lr_axis: str = LR_AXIS
                      ) -> pd.DataFrame:
  """One row per combination of the axes other than `lr_axis` (and ``train.seed``):
  its title, LR sensitivity, best learning rate, best (capped) loss, diverged runs and
  runs. Empty when `lr_axis` is not swept."""
  if lr_axis not in axes or df.empty:
    return pd.DataFrame()
  others = [a for a in axes if a not in (lr_axis, "train.seed")]
  groups = df.groupby(others, sort=True, dropna=False) if others else [((), df)]
  rows = []
  for values, rows_df in groups:
    values = values if isinstance(values, tuple) else (values,)
    capped = capped_loss(rows_df["final_loss"], rows_df["initial_loss"])
    per_lr = pd.Series(capped).groupby(rows_df[lr_axis].to_numpy(float)).mean()
    diverged = int((~np.isfinite(rows_df["final_loss"].to_numpy(float))).sum())
    rows.append({
      "panel": ", ".join(f"{a}={format_value(v)}" for a, v in zip(others, values,
                                                                   strict=True)) or "all",
      "lr_sensitivity": lr_sensitivity(rows_df[lr_axis], rows_df["final_loss"],
                                       rows_df["initial_loss"]),
      "best_lr": float(per_lr.idxmin()),
      "best_loss": float(per_lr.min()),
      "diverged": diverged,
      "runs": len(rows_df),
    })
  return pd.DataFrame(rows)


def logit_table(df: pd.DataFrame, axes: Sequence[str], lr_axis: str = LR_AXIS,
                column: str = LOGIT_COLUMN) -> pd.DataFrame:
  """Median of `column` per learning rate (columns) and combination of the other axes
  (rows); empty when the column or the learning-rate axis is missing."""
  if lr_axis not in axes or column not in df:
    return pd.DataFrame()
  others = [a for a in axes if a not in (lr_axis, "train.seed")]
  keyed = df.assign(panel=[", ".join(f"{a}={format_value(r[a])}" for a in others) or "all"
                           for _, r in df.iterrows()])
  return keyed.pivot_table(index="panel", columns=lr_axis, values=column, aggfunc="median")


def report_section(df: pd.DataFrame, axes: Sequence[str]) -> list[str]:
  """Markdown lines for report.md; [] when the sweep has no learning-rate axis."""
  table = sensitivity_table(df, list(axes))
  if table.empty:
    return []
  lines = ["## LR sensitivity (Wortsman et al. 2023)", "",
           "E over lr of [min(final_loss(lr), initial_loss) - min over lr], diverged runs "
           "counted at the initial loss; lower is more robust to the learning rate.", "",
           *markdown_table(
             ["panel", "LR sensitivity", "best lr", "best loss", "diverged", "runs"],
             [[r.panel, f"{r.lr_sensitivity:.4f}", format_value(r.best_lr),
               f"{r.best_loss:.4f}", r.diverged, r.runs] for r in table.itertuples()]), ""]
  logits = logit_table(df, list(axes))
  if not logits.empty:
    lines += [f"### Max attention logit vs learning rate (`{LOGIT_COLUMN}`, median)", "",
              *markdown_table(["panel", *(f"lr={format_value(c)}" for c in logits.columns)],
                              [[idx, *(f"{v:.3g}" for v in row)]
                               for idx, row in logits.iterrows()]), ""]
  return lines
