"""report.md: a sweep's results in one readable page.

`write_report` writes WORKDIR/report.md with the number of runs, for a sweep with an
optimizer or remedy axis which variant to choose (`gradlab.report.recommendation`), the
swept axes and their values, regime counts and fractions per panel (a panel is one
combination of values of `axes[2:]`, as in `gradlab.panels`), where cells hold several runs
(``sweep.replicas``) how many cells are uncertain and whether they sit next to a
boundary (`gradlab.panels.agreement_summary`), the best test accuracy per panel with
the axis values that reached it, the LR sensitivity (`gradlab.report.sensitivity`),
links to the figures, and any extra markdown.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.panels import (
  agreement_summary,
  cell_regimes,
  format_value,
  is_log_spaced,
  near_boundary,
  split_panels,
)
from gradlab.regimes import REGIME_ORDER, check_regimes
from gradlab.report import recommendation, sensitivity
from gradlab.report.markdown import markdown_table

MAX_LISTED_VALUES = 12


def write_report(
  workdir: str,
  df: pd.DataFrame,
  axes: list[str],
  figures: dict[str, str],
  extra: str = "",
) -> str:
  """Write WORKDIR/report.md and return its path.

  Args:
    workdir: folder of the sweep; created if missing. Figure links are relative to it.
    df: one row per run, with a column per axis in `axes` and a `regime` column;
      `test_accuracy`, `seed` and `run_id` are used where present.
    axes: swept axis names (dotted config keys) in the order the config gives them.
    figures: caption -> figure path (absolute, or relative to `workdir`), e.g.
      {"regime map": "/runs/x/regime_map.png"}.
    extra: markdown appended at the end.
  """
  panels = split_panels(df, axes)
  lines = [
    "# gradlab sweep report",
    "",
    f"**Runs:** {len(df)}",
    "",
    *recommendation.section(df, axes),
    *_axes_section(df, axes),
    *_regime_sections(panels),
    *_agreement_section(df, axes),
    *_accuracy_section(panels, axes),
    *sensitivity.report_section(df, axes),
    *_figures_section(workdir, figures),
  ]
  if extra:
    lines += ["", extra.strip("\n")]
  while lines and not lines[-1]:
    lines.pop()
  path = os.path.join(workdir, "report.md")
  os.makedirs(workdir, exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(tmp, path)  # readers never see a half-written report
  return path


def _axes_section(df: pd.DataFrame, axes: Sequence[str]) -> list[str]:
  lines = ["## Axes", ""]
  for name in axes:
    values = _sorted_unique(df[name])
    shown = [format_value(v) for v in values]
    if len(shown) > MAX_LISTED_VALUES:
      shown = [*shown[:3], "...", *shown[-3:]]
    scale = " (log-spaced)" if _numeric(df[name]) and is_log_spaced(values) else ""
    lines.append(f"- `{name}`: {len(values)} values{scale}: {', '.join(shown)}")
  return [*lines, ""]


def _regime_sections(panels: list[tuple[str, pd.DataFrame]]) -> list[str]:
  counts = []
  for _, rows in panels:
    regimes = rows["regime"].value_counts()
    check_regimes(regimes.index)
    counts.append([int(regimes.get(r, 0)) for r in REGIME_ORDER])
  titles = [title for title, _ in panels]
  count_rows = [[t, *c, sum(c)] for t, c in zip(titles, counts, strict=True)]
  if len(panels) > 1:
    totals = np.sum(counts, axis=0).tolist()
    count_rows.append(["**total**", *totals, sum(totals)])
  fraction_rows = [[row[0], *(f"{n / row[-1]:.2f}" for n in row[1:-1])] for row in count_rows]
  return [
    "## Regime counts per panel",
    "",
    *markdown_table(["panel", *REGIME_ORDER, "runs"], count_rows),
    "",
    "## Regime fractions per panel",
    "",
    *markdown_table(["panel", *REGIME_ORDER], fraction_rows),
    "",
  ]


def _agreement_section(df: pd.DataFrame, axes: Sequence[str], max_listed: int = 10
                       ) -> list[str]:
  """Uncertain cells (fewer than all their runs agree) per panel and overall, and how
  many of them sit next to a boundary; nothing when every cell holds one run."""
  if not axes or int(df.groupby(list(axes), dropna=False).size().max()) < 2:
    return []
  table = agreement_summary(df, axes)
  shown = table if len(table) > 2 else table.iloc[:1]
  rows = [["**total**" if r.panel == "total" else r.panel, r.cells, r.runs_per_cell,
           r.uncertain, f"{r.uncertain_fraction:.2f}", r.stability_split,
           r.uncertain_near_boundary, r.near_boundary] for r in shown.itertuples()]
  total = table.iloc[-1]
  n_unc, n_cells = int(total["uncertain"]), int(total["cells"])
  near_unc, near_all = int(total["uncertain_near_boundary"]), int(total["near_boundary"])
  lines = [
    "## Agreement between replicas",
    "",
    "Each cell's label is the majority of its runs (seeds; ties go to the worse label). "
    "A cell is *uncertain* when fewer than all its runs agree (a dot on the regime map); "
    "it is *next to a boundary* when a neighbouring cell (one value away along "
    f"`{axes[0]}`" + (f" or `{axes[1]}`" if len(axes) > 1 else "") + ", same panel) has a "
    "different majority label. *Stable/unstable split*: uncertain cells whose runs "
    "disagree on stability (some exploding or diverged, some not), the disagreement "
    "the boundary search and the stable-lr tables see.",
    "",
    *markdown_table(["panel", "cells", "runs per cell", "uncertain", "uncertain fraction",
                     "stable/unstable split", "uncertain next to a boundary",
                     "cells next to a boundary"], rows),
    "",
    f"**Uncertain cells: {n_unc} of {n_cells} ({_percent(n_unc, n_cells)}).** "
    f"{near_unc} of them ({_percent(near_unc, n_unc)}) sit next to a boundary, where "
    f"{near_all} of all {n_cells} cells ({_percent(near_all, n_cells)}) do.",
    "",
    *_label_mixes(df, axes),
  ]
  cells = cell_regimes(df, axes)
  away = cells[cells["uncertain"].to_numpy(bool) & ~near_boundary(cells, axes)]
  if len(away):
    lines += [f"Uncertain cells away from any boundary ({len(away)}"
              + (f", first {max_listed}" if len(away) > max_listed else "") + "):", ""]
    for _, cell in away.head(max_listed).iterrows():
      where = ", ".join(f"`{a}`={format_value(cell[a])}" for a in axes)
      lines.append(f"- {where}: {cell['regime']} ({cell['n_agree']} of {cell['n_runs']})")
    lines.append("")
  return lines


def _label_mixes(df: pd.DataFrame, axes: Sequence[str]) -> list[str]:
  """How often each set of labels occurs among the uncertain cells (e.g. 'stalled +
  exploding: 12 cells'), each set listed best to worst (`REGIME_ORDER`)."""
  mixes = df.groupby(list(axes), dropna=False)["regime"].agg(
    lambda runs: " + ".join(r for r in REGIME_ORDER if r in set(runs)))
  counts = mixes[mixes.str.contains(" + ", regex=False)].value_counts()
  if counts.empty:
    return []
  text = "; ".join(f"{mix}: {n} cell{'s' * (n != 1)}" for mix, n in counts.items())
  return [f"Labels mixed in the uncertain cells: {text}.", ""]


def _percent(part: int, whole: int) -> str:
  return f"{100.0 * part / whole:.0f}%" if whole else "n/a"


def _accuracy_section(panels: list[tuple[str, pd.DataFrame]], axes: Sequence[str]) -> list[str]:
  lines = ["## Best test accuracy per panel", ""]
  if not any("test_accuracy" in rows for _, rows in panels):
    return [*lines, "No test accuracy was recorded.", ""]
  shown_axes = list(axes[:2])
  extras = [c for c in ("seed", "run_id") if c in panels[0][1] and c not in shown_axes]
  table = []
  for title, rows in panels:
    acc = pd.to_numeric(rows["test_accuracy"], errors="coerce").to_numpy(dtype=float)
    acc = np.where(np.isfinite(acc), acc, np.nan)
    if not np.all(np.isnan(acc)):
      best = rows.iloc[int(np.nanargmax(acc))]
      table.append(
        [
          title,
          f"{np.nanmax(acc):.4f}",
          *(format_value(best[c]) for c in shown_axes),
          *(format_value(best[c]) for c in extras),
        ]
      )
    else:
      table.append([title, "n/a", *([""] * (len(shown_axes) + len(extras)))])
  header = ["panel", "best test accuracy", *(f"`{a}`" for a in shown_axes), *extras]
  return [*lines, *markdown_table(header, table), ""]


def _figures_section(workdir: str, figures: dict[str, str]) -> list[str]:
  if not figures:
    return []
  lines = ["## Figures", ""]
  for caption, path in figures.items():
    rel = path if not os.path.isabs(path) else os.path.relpath(path, os.path.abspath(workdir))
    rel = rel.replace(os.sep, "/")
    target = f"<{rel}>" if any(ch in rel for ch in " ()") else rel
    lines += [f"![{caption.replace('_', ' ')}]({target})", ""]
  return lines


def _numeric(column: pd.Series) -> bool:
  return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _sorted_unique(column: pd.Series) -> list:
  values = column.drop_duplicates().tolist()
  if _numeric(column):
    return sorted(values, key=lambda v: (math.isnan(v), v))
  return sorted(values, key=str)
