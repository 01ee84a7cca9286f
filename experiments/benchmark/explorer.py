"""``--preset=explorer``: index.html's size and load time for given sweep folders.

For each folder (``--explorer_workdirs=A,B``): the time to write index.html from scratch
(trajectory scripts converted) and to rewrite it (as the live view does after a chunk),
the bytes of index.html, of plotly.js beside it and of the trajectory scripts, and, in
headless Chromium (`gradlab.viz.explorer.browser`), the milliseconds from navigation to
the drawn map and from a click on a cell to its curves (median of `repeats` loads),
with the page's script errors counted.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from typing import Any

from gradlab import results
from gradlab.viz.explorer import browser as browser_lib
from gradlab.viz.explorer.page import PLOTLY_FILE, write_index
from gradlab.viz.explorer.trajectories import SUBDIR


def _folder_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
             for f in files) if os.path.isdir(path) else 0


def measure_one(workdir: str, repeats: int = 3) -> dict[str, Any]:
  """The numbers of the module docstring for one sweep folder."""
  shutil.rmtree(os.path.join(workdir, "explorer"), ignore_errors=True)
  t0 = time.perf_counter()
  path = write_index(workdir)
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  write_index(workdir)
  again = time.perf_counter() - t0
  out: dict[str, Any] = {
    "workdir": workdir, "runs": len(results.load(workdir)),
    "write_s": round(first, 2), "rewrite_s": round(again, 2),
    "index_bytes": os.path.getsize(path),
    "plotly_bytes": os.path.getsize(os.path.join(workdir, PLOTLY_FILE)),
    "trajectory_bytes": _folder_bytes(os.path.join(workdir, SUBDIR)),
  }
  browser, why = browser_lib.headless_chromium()
  if browser is None:
    return {**out, "browser": why}
  try:
    loads, clicks, errors = [], [], 0
    for _ in range(repeats):
      loads.append(browser_lib.open_page(browser, os.path.abspath(path)))
      clicks.append(browser_lib.click_cell(browser, 0, 0, 0))
      errors += len(browser_lib.severe_errors(browser))
    cells = browser.execute_script("return window.gradlabExplorer.cellCount()")
  finally:
    browser.quit()
  return {**out, "cells": cells, "load_ms": round(statistics.median(loads)),
          "click_ms": round(statistics.median(clicks)), "script_errors": errors,
          "browser": "headless Chromium"}


def measure_explorer(workdirs: list[str], repeats: int = 3) -> dict[str, Any]:
  return {"explorer": [measure_one(w, repeats) for w in workdirs]}


def explorer_markdown(result: dict[str, Any]) -> str:
  head = ("| sweep | runs | cells | index.html | plotly.js | trajectory scripts | write | "
          "rewrite | load (map drawn) | click to curves | script errors |")
  lines = [head, "|" + "---|" * 11]
  mb = 1024 * 1024
  for r in result["explorer"]:
    lines.append(
      f"| {os.path.basename(os.path.abspath(r['workdir']))} | {r['runs']} | "
      f"{r.get('cells', '-')} | {r['index_bytes'] / mb:.2f} MiB | "
      f"{r['plotly_bytes'] / mb:.2f} MiB | {r['trajectory_bytes'] / mb:.1f} MiB | "
      f"{r['write_s']} s | {r['rewrite_s']} s | "
      f"{r.get('load_ms', '-')} ms | {r.get('click_ms', '-')} ms | "
      f"{r.get('script_errors', r['browser'])} |")
  return "\n".join(lines)
