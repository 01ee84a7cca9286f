"""Tests for gradlab.plots and gradlab.report: spacing rules, cell edges, the
per-cell reduction of seeds, figure files and the markdown report."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from gradlab import plots
from gradlab.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == PNG_MAGIC
  return struct.unpack(">II", head[16:24])


def _sweep(optimizers=("sgd",), seeds=1) -> pd.DataFrame:
  """4 sigma_w x 3 learning rates per optimizer; diverged in the 4 cells with
  lr * sigma_w^2 >= 0.1, stalled at lr = 1e-3, trained elsewhere."""
  rows = []
  for opt in optimizers:
    for sigma_w in (0.5, 1.0, 2.0, 4.0):
      for lr in (1e-3, 1e-2, 1e-1):
        for seed in range(seeds):
          x = lr * sigma_w**2
          regime = "diverged" if x >= 0.1 else "stalled" if lr < 5e-3 else "trained"
          rows.append(
            {
              "init.sigma_w": sigma_w,
              "optimizer.learning_rate": lr,
              "optimizer.name": opt,
              "seed": seed,
              "run_id": len(rows),
              "regime": regime,
              "final_loss": np.nan if regime == "diverged" else 0.1 + x,
              "test_accuracy": np.nan if regime == "diverged" else 0.5 + x,
            }
          )
  return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _no_leaked_figures():
  yield
  assert plt.get_fignums() == [], "a plotting function left a figure open"


def test_is_log_spaced():
  assert plots.is_log_spaced(np.logspace(-4, 1, 8))
  assert plots.is_log_spaced([1, 2, 4, 8])  # constant ratio, span only 8x
  assert plots.is_log_spaced([0.25, 1.0, 8.0])  # span >= 20
  assert not plots.is_log_spaced(np.linspace(0.1, 1, 8))
  assert not plots.is_log_spaced(np.arange(1, 33))  # arithmetic, even though 32x
  assert not plots.is_log_spaced([0.0, 1e-3, 1e-2, 1e-1])
  assert not plots.is_log_spaced([-1e-2, 1e-3, 1e-2, 1e-1])
  assert not plots.is_log_spaced(["sgd", "adam"])


def test_cell_edges_log_axis_uses_geometric_midpoints():
  edges = plots.cell_edges([1e-3, 1e-2, 1e-1])
  np.testing.assert_allclose(edges, [10**-3.5, 10**-2.5, 10**-1.5, 10**-0.5])
  # Every cell is equally wide on a log axis.
  np.testing.assert_allclose(np.diff(np.log(edges)), np.log(10.0))


def test_cell_edges_linear_axis_uses_arithmetic_midpoints():
  np.testing.assert_allclose(plots.cell_edges([0.0, 1.0, 3.0]), [-0.5, 0.5, 2.0, 4.0])
  np.testing.assert_allclose(plots.cell_edges([2.0, 4.0], log=False), [1.0, 3.0, 5.0])


def test_format_value():
  assert plots.format_value(1e-3) == "1e-3"
  assert plots.format_value(2.68e-3) == "2.7e-3"
  assert plots.format_value(0.25) == "0.25"
  assert plots.format_value(8.0) == "8"
  assert plots.format_value(np.int64(64)) == "64"
  assert plots.format_value("adam") == "adam"


def test_worst_common_regime_majority_then_worse_on_ties():
  assert plots.worst_common_regime(["trained", "trained", "diverged"]) == "trained"
  assert plots.worst_common_regime(["trained", "diverged"]) == "diverged"
  assert plots.worst_common_regime(["stalled", "exploding"]) == "exploding"
  assert plots.worst_common_regime(["trained", "stalled"]) == "stalled"


def test_cell_regimes_reduces_seeds_per_cell():
  df = pd.DataFrame(
    {
      "x": [1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0],
      "y": ["a"] * 10,
      "regime": [
        "trained",
        "trained",
        "diverged",  # majority wins
        "trained",
        "diverged",  # 1-1 tie -> worse
        "stalled",
        "stalled",
        "exploding",
        "exploding",
        "trained",
      ],  # 2-2 tie
    }
  )
  cells = plots.cell_regimes(df, ["x", "y"]).set_index("x")
  assert cells.loc[1.0, "regime"] == "trained"
  assert cells.loc[2.0, "regime"] == "diverged"
  assert cells.loc[3.0, "regime"] == "exploding"
  assert cells["n_runs"].to_dict() == {1.0: 3, 2.0: 2, 3.0: 5}


def test_cell_final_loss_marks_nonfinite_cells():
  df = pd.DataFrame(
    {
      "x": [1, 1, 1, 2, 2, 3, 4],
      "final_loss": [0.5, 2.0, np.nan, 1.0, np.inf, 0.3, -np.inf],
    }
  )
  cells = plots.cell_final_loss(df, ["x"]).set_index("x")
  assert cells.loc[1, "final_loss"] == 2.0  # median of 0.5, 2, +inf
  assert bool(cells.loc[1, "finite"])
  assert not cells.loc[2, "finite"]  # median of 1, inf is inf
  assert cells.loc[3, "final_loss"] == pytest.approx(0.3)
  assert not cells.loc[4, "finite"]


def test_regime_map_writes_png_that_widens_with_panels(tmp_path):
  one = plots.regime_map(
    _sweep(), ["init.sigma_w", "optimizer.learning_rate"], str(tmp_path / "one.png")
  )
  three = plots.regime_map(
    _sweep(("sgd", "adam", "lion")),
    ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"],
    str(tmp_path / "sub" / "three.png"),
  )
  assert three == str(tmp_path / "sub" / "three.png")
  (w1, h1), (w3, h3) = _png_size(one), _png_size(three)
  assert w3 > 2 * w1 - 200  # three panels side by side
  assert abs(h3 - h1) < 0.2 * h1  # still one row


def test_regime_map_single_axis_is_a_strip(tmp_path):
  full = _png_size(
    plots.regime_map(
      _sweep(), ["init.sigma_w", "optimizer.learning_rate"], str(tmp_path / "full.png")
    )
  )
  strip = _png_size(plots.regime_map(_sweep(), ["init.sigma_w"], str(tmp_path / "strip.png")))
  assert strip[1] < full[1]


def test_plots_reject_bad_input(tmp_path):
  df = _sweep()
  with pytest.raises(ValueError, match="at least one axis"):
    plots.regime_map(df, [], str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="model.depth"):
    plots.regime_map(df, ["model.depth"], str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="unknown regime"):
    plots.regime_map(df.assign(regime="stable"), ["init.sigma_w"], str(tmp_path / "x.png"))


def test_final_loss_map_draws_nonfinite_losses(tmp_path):
  df = _sweep(("sgd", "adam"), seeds=2)
  df.loc[df.index[0], "final_loss"] = np.inf  # one of the two seeds of a finite cell
  axes = ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]
  path = plots.final_loss_map(df, axes, str(tmp_path / "loss.png"))
  assert _png_size(path)[0] > 0
  cells = plots.cell_final_loss(df, axes)
  # 4 diverged cells per optimizer, plus the cell whose median is now inf.
  assert (~cells["finite"]).sum() == 2 * 4 + 1
  # Every cell non-finite still draws (no colorbar, all black).
  plots.final_loss_map(df.assign(final_loss=np.nan), axes, str(tmp_path / "black.png"))


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

  counts = _table(text, "## Regime counts per panel")
  assert counts[0] == ["panel", "trained", "stalled", "exploding", "diverged", "runs"]
  assert counts[1] == ["optimizer.name=adam", "2", "1", "0", "0", "3"]
  assert counts[2] == ["optimizer.name=sgd", "2", "0", "1", "1", "4"]
  assert counts[3] == ["**total**", "4", "1", "1", "1", "7"]

  fractions = _table(text, "## Regime fractions per panel")
  assert fractions[2] == ["optimizer.name=sgd", "0.50", "0.00", "0.25", "0.25"]

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
  assert counts[1][1:] == [str((df["regime"] == r).sum()) for r in plots.REGIME_ORDER] + ["12"]
  assert "No test accuracy was recorded." in text
  assert "## Figures" not in text
