"""compare.md: what changed between two sweeps of one grid (`gradlab.compare`), in words.

The counts (cells run in both, changed, better, worse, stability flips, cells run in
one sweep only), the transitions table (rows: A's regime, columns: B's; it sums to the
cells run in both), and the changed cells, stability flips first (they matter most:
trained -> diverged is not trained -> stalled), capped at `MAX_LISTED_CELLS`.
"""

from __future__ import annotations

import pandas as pd

from gradlab.compare import TO_STABLE, TO_UNSTABLE, Comparison
from gradlab.panels import format_value
from gradlab.regimes import REGIME_ORDER, STABLE
from gradlab.report.markdown import markdown_table

MAX_LISTED_CELLS = 30


def _share(n: int, total: int) -> str:
  return f"{n} ({100.0 * n / total:.0f}%)" if total else str(n)


def compare_markdown(comparison: Comparison, workdir_a: str, workdir_b: str,
                     figure: str = "compare.png") -> str:
  """The text of compare.md for `comparison` of sweep A (`workdir_a`) and B, linking
  `figure` (a path relative to the markdown file)."""
  c, axes, cells = comparison.counts, list(comparison.axes), comparison.cells
  stable = ", ".join(STABLE)
  unstable = ", ".join(r for r in REGIME_ORDER if r not in STABLE)
  lines = [
    "# Regime changes from A to B", "",
    f"- A: `{workdir_a}`", f"- B: `{workdir_b}`",
    f"- the grid: {' x '.join(f'`{a}`' for a in axes)}; a cell's regime is the majority "
    f"label of its runs (ties to the worse)", "",
    *markdown_table(["", "cells"], [
      ["run in both", c.cells],
      ["changed regime", _share(c.changed, c.cells)],
      [f"better in B (earlier in {' > '.join(REGIME_ORDER)})", c.better],
      ["worse in B", c.worse],
      [f"{TO_UNSTABLE} (from {stable} to {unstable})", c.to_unstable],
      [f"{TO_STABLE}", c.to_stable],
      ["run in A only (not compared)", c.only_a],
      ["run in B only (not compared)", c.only_b],
    ]), "",
    "## Transitions", "",
    "Cells run in both sweeps, by regime in A (rows) and in B (columns); the diagonal is "
    "unchanged.", "",
    *_transitions_table(comparison.transitions), "",
  ]
  changed = cells[cells["changed"]]
  if len(changed):
    first = changed.assign(_later=(changed["flip"] == "").to_numpy()).sort_values(
      "_later", kind="stable").head(MAX_LISTED_CELLS)
    lines += [f"## Changed cells ({len(changed)}, stability flips first)", "",
              *markdown_table([*axes, "A", "B", "direction", "stability"],
                              [[*(format_value(r[a]) for a in axes), r["regime_a"],
                                r["regime_b"], r["direction"], r["flip"] or "-"]
                               for _, r in first.iterrows()])]
    more = len(changed) - len(first)
    lines += ["", f"and {more} more.", ""] if more > 0 else [""]
  lines += [f"![regime maps of A and B, and what changed]({figure})", ""]
  return "\n".join(lines)


def _transitions_table(transitions: pd.DataFrame) -> list[str]:
  header = ["A \\ B", *map(str, transitions.columns), "total"]
  rows = [[str(regime), *(int(n) for n in counts), int(counts.sum())]
          for regime, counts in transitions.iterrows()]
  rows.append(["total", *(int(n) for n in transitions.sum(axis=0)), int(transitions.sum().sum())])
  return markdown_table(header, rows)
