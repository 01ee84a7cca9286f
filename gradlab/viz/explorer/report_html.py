"""report.md as HTML for index.html: the subset of markdown gradlab's report writes.

Headings (#, ##, ###), GitHub tables (with escaped pipes), "- " lists, images on their
own line, paragraphs, **bold** and `code`. Everything else is escaped text. Not a
general markdown renderer: the report is gradlab's own output.
"""

from __future__ import annotations

import html
import re

_IMAGE = re.compile(r"^!\[(.*)\]\(<?([^>)]*)>?\)$")


def _inline(text: str) -> str:
  out = html.escape(text, quote=False)
  out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
  return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _cells(line: str) -> list[str]:
  body = line.strip().strip("|")
  return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _table(lines: list[str]) -> str:
  head, rows = _cells(lines[0]), [_cells(x) for x in lines[2:]]
  out = ["<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
  out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows]
  return "\n".join(out) + "</table>"


def to_html(markdown: str, fold_tables: bool = False) -> str:
  """HTML of gradlab's report markdown (module docstring); with `fold_tables` every
  table sits in a closed <details> element (the page's opening section stays short)."""
  blocks: list[str] = []
  lines = markdown.splitlines()
  i = 0
  while i < len(lines):
    line = lines[i]
    if not line.strip():
      i += 1
    elif line.startswith("#"):
      level = min(len(line) - len(line.lstrip("#")), 4)
      blocks.append(f"<h{level + 1}>{_inline(line.lstrip('#').strip())}</h{level + 1}>")
      i += 1
    elif line.startswith("|"):
      j = i
      while j < len(lines) and lines[j].startswith("|"):
        j += 1
      table = _table(lines[i:j])
      blocks.append(f"<details><summary>table ({j - i - 2} rows)</summary>{table}</details>"
                    if fold_tables else table)
      i = j
    elif line.startswith("- "):
      items = []
      while i < len(lines) and lines[i].startswith("- "):
        items.append(f"<li>{_inline(lines[i][2:])}</li>")
        i += 1
      blocks.append("<ul>" + "".join(items) + "</ul>")
    elif _IMAGE.match(line.strip()):
      caption, src = _IMAGE.match(line.strip()).groups()
      blocks.append(f"<figure><img src=\"{html.escape(src)}\" alt=\"{html.escape(caption)}\">"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
      i += 1
    else:
      para = []
      while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ")):
        para.append(lines[i])
        i += 1
      blocks.append(f"<p>{_inline(' '.join(para))}</p>")
  return "\n".join(blocks)


def split_section(markdown: str, heading: str) -> tuple[str, str]:
  """(the section under `heading` ('## ...' line, up to the next '## '), the rest)."""
  lines = markdown.splitlines()
  if heading not in lines:
    return "", markdown
  start = lines.index(heading)
  end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")),
             len(lines))
  return "\n".join(lines[start:end]), "\n".join(lines[:start] + lines[end:])
