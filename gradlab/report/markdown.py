"""Markdown building blocks shared by report.md's sections."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
  """Lines of a GitHub-flavoured markdown table (header, separator, rows)."""
  if any(len(r) != len(header) for r in rows):
    raise ValueError(f"every table row needs {len(header)} cells")
  return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _row(cells: Sequence[object]) -> str:
  return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
