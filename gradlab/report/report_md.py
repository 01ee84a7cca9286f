"""report.md: a sweep's results in one readable page.

`write_report` writes WORKDIR/report.md with the number of runs, the swept axes and
their values, regime counts and fractions per panel (a panel is one combination of
values of `axes[2:]`, as in `gradlab.panels`), the best test accuracy per panel with
the axis values that reached it, the LR sensitivity (`gradlab.report.sensitivity`),
links to the figures, and any extra markdown.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.panels import format_value, is_log_spaced, split_panels
from gradlab.regimes import REGIME_ORDER, check_regimes
from gradlab.report import sensitivity
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
    *_axes_section(df, axes),
    *_regime_sections(panels),
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
