"""Runs one paper (or all): trains, judges, draws, and writes reproduction.json."""

from __future__ import annotations

import logging
import os
import time
import traceback
from typing import Any

from experiments.reproduce.base import PAPERS, Context, Outcome, Paper
from experiments.reproduce.claims import judge
from experiments.reproduce.record import FIGURE_FILE, make_record, write_record

log = logging.getLogger("gradlab")


def run_paper(paper: Paper, ctx: Context, commit: str) -> dict[str, Any]:
  """Runs `paper` at `ctx`'s scale into ctx.workdir; writes reproduction.json and
  figure.png there and returns the record."""
  os.makedirs(ctx.workdir, exist_ok=True)
  start = time.perf_counter()
  outcome = paper.run(ctx)
  runtime = time.perf_counter() - start
  paper.draw(outcome, os.path.join(ctx.workdir, FIGURE_FILE), ctx)
  record = make_record(paper, outcome, ctx, runtime, commit)
  write_record(ctx.workdir, record)
  return record


def failed_run(paper: Paper, ctx: Context, error: BaseException, runtime: float,
               commit: str) -> dict[str, Any]:
  """The record of a paper whose experiment raised: one failed claim naming the error."""
  line = " ".join(str(error).split())[:300] or type(error).__name__
  claim = judge("experiment_ran", "the experiment runs to the end", "-", 1.0, None, 0.0,
                "at_least", note=f"{type(error).__name__}: {line}")
  record = make_record(paper, Outcome([claim], {}), ctx, runtime, commit)
  write_record(ctx.workdir, record)
  return record


def run_one(pid: str, workdir: str, index: int, total: int, quick: bool, smoke: bool,
            commit: str, progress: bool = False, keep_going: bool = False) -> dict[str, Any]:
  """Runs paper `pid` into `workdir` and logs its verdicts. With `keep_going` (--all), a
  paper that raises is recorded as failed (its traceback on stderr) so the others run."""
  paper = PAPERS.get(pid)
  ctx = Context(workdir, quick=quick, smoke=smoke, progress=progress)
  log.info(f"[{index + 1}/{total}] {pid}: {paper.title} ({ctx.scale})")
  start = time.perf_counter()
  try:
    record = run_paper(paper, ctx, commit)
  except Exception as e:
    if not keep_going:
      raise
    traceback.print_exc()
    record = failed_run(paper, ctx, e, time.perf_counter() - start, commit)
  log.info("  " + verdict_line(record))
  return record


def verdict_line(record: dict[str, Any]) -> str:
  claims = record["claims"]
  held = sum(c["passed"] for c in claims)
  parts = [f"{c['name']} {'held' if c['passed'] else 'FAILED'}" for c in claims]
  return (f"{record['paper']}: {held} of {len(claims)} claims held in "
          f"{record['runtime_s']:.0f} s ({', '.join(parts)})")
