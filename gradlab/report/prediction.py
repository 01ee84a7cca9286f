"""report.md's "Predicted vs observed regime" section: how often the regime predicted
before training (`gradlab.prediction`) matched the observed one, overall and per
optimizer, with the confusion tables and how many sharpness estimates converged."""

from __future__ import annotations

import pandas as pd

from gradlab.regimes import REGIME_ORDER, STABLE
from gradlab.report.markdown import markdown_table


def agreement(df: pd.DataFrame) -> tuple[float, float]:
  """(exact, stable-vs-unstable) agreement of predicted_regime with regime: the fraction
  of runs whose labels are equal, and whose labels fall on the same side of
  `gradlab.regimes.STABLE` (stable: neither exploding nor diverged)."""
  exact = float((df["predicted_regime"] == df["regime"]).mean())
  side = float((df["predicted_regime"].isin(STABLE) == df["regime"].isin(STABLE)).mean())
  return exact, side


def confusion(df: pd.DataFrame) -> list[str]:
  """The markdown confusion table: predicted (rows) against observed (columns), labels
  in `REGIME_ORDER` (then any other), every label that occurs on either side."""
  seen = set(df["predicted_regime"]) | set(df["regime"])
  labels = [r for r in REGIME_ORDER if r in seen] + sorted(seen - set(REGIME_ORDER))
  table = pd.crosstab(df["predicted_regime"], df["regime"]).reindex(
    index=labels, columns=labels, fill_value=0)
  header = ["predicted \\ observed", *table.columns]
  return markdown_table(header, [[i, *row] for i, row in zip(table.index, table.values,
                                                              strict=True)])


def _per_optimizer(df: pd.DataFrame) -> list[str]:
  """One row per optimizer: runs, exact and stable-vs-unstable agreement."""
  rows = []
  for name, part in df.groupby("optimizer.name", sort=True):
    exact, side = agreement(part)
    rows.append([name, len(part), f"{exact:.0%}", f"{side:.0%}"])
  return markdown_table(["optimizer", "runs", "exact", "stable vs unstable"], rows)


def _convergence(df: pd.DataFrame) -> str:
  """A sentence on the initial sharpness estimates: how many converged."""
  if "initial_sharpness_converged" not in df:
    return ""
  measured = df["initial_sharpness"].notna()
  if not measured.any():
    return ""
  ok = df.loc[measured, "initial_sharpness_converged"].astype(bool)
  iters = df.loc[measured, "initial_sharpness_iters"]
  return (f"The step-0 sharpness estimate converged (``diagnostics.power_tol``) in "
          f"{int(ok.sum())} of {int(measured.sum())} runs (median {iters.median():.0f} "
          f"power iterations, at most {iters.max():.0f}).")


def report_section(df: pd.DataFrame) -> str:
  """Markdown: how often predicted_regime matched the observed regime, overall and per
  optimizer (when there is an ``optimizer.name`` column), and the confusion tables."""
  if "predicted_regime" not in df or df.empty:
    return ""
  exact, side = agreement(df)
  lines = ["## Predicted vs observed regime", "",
           f"The regime predicted from step 0 and the first log block (step-0 sharpness "
           f"against the catapult window where the loss has one, the first block's loss, "
           f"depth gain, mean-field depth scale and first-order progress; rule in "
           f"`gradlab/prediction.py`) matched the observed one in {exact:.0%} of "
           f"{len(df)} runs; stable-vs-unstable (exploding or diverged) matched in "
           f"{side:.0%}.", ""]
  converged = _convergence(df)
  if converged:
    lines += [converged, ""]
  lines += confusion(df)
  if "optimizer.name" in df and df["optimizer.name"].nunique() > 1:
    lines += ["", "Per optimizer:", "", *_per_optimizer(df)]
    for name, part in df.groupby("optimizer.name", sort=True):
      lines += ["", f"Confusion, {name}:", "", *confusion(part)]
  return "\n".join(lines) + "\n"
