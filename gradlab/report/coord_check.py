"""coord_check.md: the coordinate check's summary at one step (`gradlab.coord_check`).

One table row per (parameterization, layer): the seed-averaged activation RMS at the
smallest and largest width, their ratio (above 1: the layer grows with width), the
spread (max over min across every width: the pass is spread <= 2), the fitted log-log
slope (RMS ~ width^slope), and the same ratio and slope of the change since init; then
one sentence per parameterization (`gradlab.coord_check.verdict`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from gradlab.coord_check import verdict
from gradlab.report.markdown import markdown_table

HEADER = ("parameterization", "layer", "RMS at min width", "RMS at max width", "ratio",
          "spread", "slope", "within 2x", "change: ratio", "change: slope")


def summary_rows(summary: pd.DataFrame, step: int) -> list[list[str]]:
  """The table's rows at `step` (numbers to 3 significant figures)."""
  at = summary[summary["step"] == step]
  acts = at[at["quantity"] == "rms"].set_index(["parameterization", "layer"])
  moved = at[at["quantity"] == "delta_rms"].set_index(["parameterization", "layer"])
  rows = []
  for (name, layer), r in acts.iterrows():
    d = moved.loc[(name, layer)]
    rows.append([name, layer, f"{r['first']:.3g}", f"{r['last']:.3g}", f"{r['ratio']:.3g}",
                 f"{r['spread']:.3g}", f"{r['slope']:+.2f}", "yes" if r["passes"] else "NO",
                 f"{d['ratio']:.3g}", f"{d['slope']:+.2f}"])
  return rows


def write_markdown(summary: pd.DataFrame, step: int, path: str,
                   context: Sequence[str] = ()) -> str:
  """coord_check.md at `path`: a heading, the `context` lines (what was run), the table
  at `step` and a sentence per parameterization; returns `path`."""
  at = summary[summary["step"] == step]
  widths = f"{int(at['width_min'].min())} to {int(at['width_max'].max())}"
  lines = [f"# Coordinate check at step {step} (widths {widths})", "", *context]
  if context:
    lines.append("")
  lines += markdown_table(HEADER, summary_rows(summary, step))
  lines.append("")
  for name in dict.fromkeys(at["parameterization"]):
    lines += [f"- {verdict(summary, name, step)}"]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return path
