"""reproduction.json: what one paper's reproduction wrote, and the check of its shape.

    {"paper": ID, "title", "citation", "quick": bool, "scale": "paper"|"quick"|"smoke",
     "claims": [{"name", "claim", "source", "paper_value", "measured", "tolerance",
                 "passed", "comparison", "compared", "statistic", "note"}],
     "runtime_s", "command", "commit", "figure", "figure_data"}

`measured` is a number, or a list when the claim is a curve (then `compared` is the
number judged). Other tools read the claim names; `check_record` is the schema.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from experiments.reproduce.base import Context, Outcome, Paper

JSON_FILE = "reproduction.json"
FIGURE_FILE = "figure.png"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CLAIM_KEYS = ("name", "claim", "source", "paper_value", "measured", "tolerance", "passed")
RECORD_KEYS = ("paper", "title", "citation", "quick", "claims", "runtime_s", "command",
               "commit")


def git_commit() -> str:
  """The repository's short commit, with '+changes' when the work tree differs from it;
  'unknown' outside a git checkout."""
  def git(*args: str) -> str:
    return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                          check=True, timeout=20).stdout.strip()

  try:
    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return commit + ("+changes" if dirty else "")


def command_line(paper_id: str, ctx: Context) -> str:
  """The command that reproduces this record (the workdir left out)."""
  flags = {"paper": "", "quick": " --quick", "smoke": " --quick --smoke"}[ctx.scale]
  return f"python -m experiments.reproduce --paper={paper_id}{flags}"


def make_record(paper: Paper, outcome: Outcome, ctx: Context, runtime_s: float,
                commit: str) -> dict[str, Any]:
  return {"paper": paper.id, "title": paper.title, "citation": paper.citation,
          "quick": bool(ctx.quick or ctx.smoke), "scale": ctx.scale,
          "claims": [c.to_json() for c in outcome.claims],
          "runtime_s": round(float(runtime_s), 1), "command": command_line(paper.id, ctx),
          "commit": commit, "figure": FIGURE_FILE, "figure_data": outcome.figure}


def write_record(workdir: str, record: Mapping[str, Any]) -> str:
  from gradlab.results import write_json

  path = os.path.join(workdir, JSON_FILE)
  write_json(path, dict(record))
  return path


def read_record(workdir: str) -> dict[str, Any]:
  with open(os.path.join(workdir, JSON_FILE)) as f:
    return json.load(f)


def check_record(record: Mapping[str, Any]) -> list[str]:
  """The ways `record` departs from the reproduction.json schema (empty: it is valid)."""
  problems = [f"missing key '{k}'" for k in RECORD_KEYS if k not in record]
  if not isinstance(record.get("quick"), bool):
    problems.append("'quick' is not a bool")
  claims = record.get("claims")
  if not isinstance(claims, list) or not claims:
    return [*problems, "'claims' is not a non-empty list"]
  for i, c in enumerate(claims):
    problems += [f"claim {i} misses '{k}'" for k in CLAIM_KEYS if k not in c]
    if not isinstance(c.get("passed"), bool):
      problems.append(f"claim {i} ('{c.get('name')}'): 'passed' is not a bool")
    m = c.get("measured")
    if not (m is None or isinstance(m, (int, float, list))):
      problems.append(f"claim {i} ('{c.get('name')}'): 'measured' is not a number or list")
  names = [c.get("name") for c in claims]
  if len(set(names)) != len(names):
    problems.append(f"claim names repeat: {names}")
  return problems
