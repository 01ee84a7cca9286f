"""Tests for gradlab.report: report.md's tables, links and sections, from hand-made
result frames (pandas only: nothing here draws)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import REPO
from conftest import hand_sweep as _sweep

from gradlab.regimes import REGIME_ORDER
from gradlab.report import write_report


def _table(text: str, heading: str) -> list[list[str]]:
  """Rows (header first, separator dropped) of the first table after `heading`."""
  after = text.split(heading, 1)[1].strip().splitlines() + [""]
  lines = after[: after.index("")]
  assert all(ln.startswith("|") and ln.endswith("|") for ln in lines)
  assert len({ln.count("|") for ln in lines}) == 1, "ragged markdown table"
  assert re.fullmatch(r"\|( --- \|)+", lines[1])
  return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln != lines[1]]


def test_write_report_counts_links_and_tables(tmp_path):
  df = pd.DataFrame(
    {
      "lr": [0.1, 0.1, 1.0, 1.0, 0.1, 1.0, 1.0],
      "sigma_w": [1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 2.0],
      "optimizer.name": ["sgd", "sgd", "sgd", "sgd", "adam", "adam", "adam"],
      "regime": ["trained", "trained", "diverged", "exploding", "stalled", "trained", "trained"],
      "test_accuracy": [0.9, 0.95, np.nan, 0.2, 0.1, 0.8, 0.85],
    }
  )
  figures = {"regime map": str(tmp_path / "regime_map.png"), "final_loss_map": "loss.png"}
  path = write_report(
    str(tmp_path),
    df,
    ["lr", "sigma_w", "optimizer.name"],
    figures,
    extra="## Notes\n\ntheory overlay pending",
  )
  assert path == str(tmp_path / "report.md")
  text = Path(path).read_text()

  def per_regime(**n):
    return [str(n.get(r, 0)) for r in REGIME_ORDER]

  counts = _table(text, "## Regime counts per panel")
  assert counts[0] == ["panel", *REGIME_ORDER, "runs"]
  assert counts[1] == ["optimizer.name=adam", *per_regime(trained=2, stalled=1), "3"]
  assert counts[2] == ["optimizer.name=sgd", *per_regime(trained=2, exploding=1, diverged=1),
                       "4"]
  assert counts[3] == ["**total**", *per_regime(trained=4, stalled=1, exploding=1,
                                                diverged=1), "7"]

  fractions = _table(text, "## Regime fractions per panel")
  assert fractions[2] == ["optimizer.name=sgd", *(
    f"{float(c) / 4:.2f}" for c in per_regime(trained=2, exploding=1, diverged=1))]

  best = _table(text, "## Best test accuracy per panel")
  assert best[1][:4] == ["optimizer.name=adam", "0.8500", "1", "2"]
  assert best[2][:4] == ["optimizer.name=sgd", "0.9500", "0.1", "2"]

  assert "**Runs:** 7" in text
  assert "- `lr`: 2 values: 0.1, 1" in text
  assert "![regime map](regime_map.png)" in text
  assert "![final loss map](loss.png)" in text
  assert text.rstrip().endswith("theory overlay pending")


def test_write_report_single_panel_without_accuracy(tmp_path):
  df = _sweep().drop(columns=["test_accuracy"])
  text = Path(write_report(str(tmp_path / "new"), df, ["init.sigma_w"], {})).read_text()
  counts = _table(text, "## Regime counts per panel")
  assert len(counts) == 2 and counts[1][0] == "all"
  assert counts[1][1:] == [str((df["regime"] == r).sum()) for r in REGIME_ORDER] + ["12"]
  assert "No test accuracy was recorded." in text
  assert "## Figures" not in text


def test_the_report_and_the_sweep_engine_do_not_import_matplotlib():
  code = ("import sys, gradlab.report, gradlab.sweep, gradlab.diagnose; "
          "sys.exit('matplotlib' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:] or "matplotlib was imported"
