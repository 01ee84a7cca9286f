"""report.md's "Predicted vs observed regime" section: how often the regime predicted
before training (`gradlab.prediction`) matched the observed one."""

from __future__ import annotations

import pandas as pd

from gradlab.report.markdown import markdown_table


def report_section(df: pd.DataFrame) -> str:
  """Markdown: how often predicted_regime matched the observed regime."""
  if "predicted_regime" not in df or df.empty:
    return ""
  exact = (df["predicted_regime"] == df["regime"]).mean()
  unstable = ("exploding", "diverged")
  stability = (df["predicted_regime"].isin(unstable) == df["regime"].isin(unstable)).mean()
  lines = ["## Predicted vs observed regime", "",
           f"The regime predicted before training (init-time depth gain and sharpness; "
           f"rule in `gradlab/prediction.py`) matched the observed one in "
           f"{exact:.0%} of {len(df)} runs; stable-vs-unstable (exploding or diverged) "
           f"matched in {stability:.0%}.", ""]
  table = pd.crosstab(df["predicted_regime"], df["regime"])
  header = ["predicted \\ observed", *table.columns]
  lines += markdown_table(header, [[i, *row] for i, row in zip(table.index, table.values,
                                                                strict=True)])
  return "\n".join(lines) + "\n"
