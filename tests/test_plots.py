"""Tests for the maps (gradlab.viz.maps) and what they read (gradlab.panels, the regime
vocabulary of gradlab.regimes): spacing rules, cell edges, the per-cell reduction of
seeds and figure files. The markdown report is tests/test_report.py."""

from __future__ import annotations

import struct

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import assert_titles_fit
from conftest import hand_sweep as _sweep

from gradlab import panels, regimes
from gradlab.viz import maps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == PNG_MAGIC
  return struct.unpack(">II", head[16:24])


@pytest.fixture(autouse=True)
def _no_leaked_figures():
  yield
  assert plt.get_fignums() == [], "a plotting function left a figure open"


def test_is_log_spaced():
  assert panels.is_log_spaced(np.logspace(-4, 1, 8))
  assert panels.is_log_spaced([1, 2, 4, 8])  # constant ratio, span only 8x
  assert panels.is_log_spaced([0.25, 1.0, 8.0])  # span >= 20
  assert not panels.is_log_spaced(np.linspace(0.1, 1, 8))
  assert not panels.is_log_spaced(np.arange(1, 33))  # arithmetic, even though 32x
  assert not panels.is_log_spaced([0.0, 1e-3, 1e-2, 1e-1])
  assert not panels.is_log_spaced([-1e-2, 1e-3, 1e-2, 1e-1])
  assert not panels.is_log_spaced(["sgd", "adam"])


def test_cell_edges_log_axis_uses_geometric_midpoints():
  edges = panels.cell_edges([1e-3, 1e-2, 1e-1])
  np.testing.assert_allclose(edges, [10**-3.5, 10**-2.5, 10**-1.5, 10**-0.5])
  # Every cell is equally wide on a log axis.
  np.testing.assert_allclose(np.diff(np.log(edges)), np.log(10.0))


def test_cell_edges_linear_axis_uses_arithmetic_midpoints():
  np.testing.assert_allclose(panels.cell_edges([0.0, 1.0, 3.0]), [-0.5, 0.5, 2.0, 4.0])
  np.testing.assert_allclose(panels.cell_edges([2.0, 4.0], log=False), [1.0, 3.0, 5.0])


def test_format_value():
  assert panels.format_value(1e-3) == "1e-3"
  assert panels.format_value(2.68e-3) == "2.7e-3"
  assert panels.format_value(0.25) == "0.25"
  assert panels.format_value(8.0) == "8"
  assert panels.format_value(np.int64(64)) == "64"
  assert panels.format_value("adam") == "adam"


def test_worst_common_regime_majority_then_worse_on_ties():
  assert regimes.worst_common_regime(["trained", "trained", "diverged"]) == "trained"
  assert regimes.worst_common_regime(["trained", "diverged"]) == "diverged"
  assert regimes.worst_common_regime(["stalled", "exploding"]) == "exploding"
  assert regimes.worst_common_regime(["trained", "stalled"]) == "stalled"


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
  cells = panels.cell_regimes(df, ["x", "y"]).set_index("x")
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
  cells = panels.cell_final_loss(df, ["x"]).set_index("x")
  assert cells.loc[1, "final_loss"] == 2.0  # median of 0.5, 2, +inf
  assert bool(cells.loc[1, "finite"])
  assert not cells.loc[2, "finite"]  # median of 1, inf is inf
  assert cells.loc[3, "final_loss"] == pytest.approx(0.3)
  assert not cells.loc[4, "finite"]


def test_regime_map_writes_png_that_widens_with_panels(tmp_path):
  one = maps.regime_map(
    _sweep(), ["init.sigma_w", "optimizer.learning_rate"], str(tmp_path / "one.png")
  )
  three = maps.regime_map(
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
    maps.regime_map(
      _sweep(), ["init.sigma_w", "optimizer.learning_rate"], str(tmp_path / "full.png")
    )
  )
  strip = _png_size(maps.regime_map(_sweep(), ["init.sigma_w"], str(tmp_path / "strip.png")))
  assert strip[1] < full[1]


def test_plots_reject_bad_input(tmp_path):
  df = _sweep()
  with pytest.raises(ValueError, match="at least one axis"):
    maps.regime_map(df, [], str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="model.depth"):
    maps.regime_map(df, ["model.depth"], str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="unknown regime"):
    maps.regime_map(df.assign(regime="stable"), ["init.sigma_w"], str(tmp_path / "x.png"))


def test_final_loss_map_draws_nonfinite_losses(tmp_path):
  df = _sweep(("sgd", "adam"), seeds=2)
  df.loc[df.index[0], "final_loss"] = np.inf  # one of the two seeds of a finite cell
  axes = ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]
  path = maps.final_loss_map(df, axes, str(tmp_path / "loss.png"))
  assert _png_size(path)[0] > 0
  cells = panels.cell_final_loss(df, axes)
  # 4 diverged cells per optimizer, plus the cell whose median is now inf.
  assert (~cells["finite"]).sum() == 2 * 4 + 1
  # Every cell non-finite still draws (no colorbar, all black).
  maps.final_loss_map(df.assign(final_loss=np.nan), axes, str(tmp_path / "black.png"))


def test_regime_map_dots_the_cells_whose_replicas_disagree(tmp_path):
  from matplotlib.collections import PathCollection

  df = _sweep(("sgd", "adam"), seeds=3)
  flip = (df["optimizer.name"] == "adam") & (df["init.sigma_w"] == 0.5) & (df["seed"] == 0)
  df.loc[flip & (df["optimizer.learning_rate"] == 1e-2), "regime"] = "diverged"  # 1 of 3
  axes = ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]
  fig = maps.regime_figure(df, axes)
  try:
    dots = {ax.get_title(): np.asarray(c.get_offsets()) for ax in fig.axes
            for c in ax.collections if isinstance(c, PathCollection)}
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    title = fig.get_suptitle()
  finally:
    plt.close(fig)
  assert list(dots) == ["optimizer.name=adam"]  # sgd: every cell agrees, no dot
  np.testing.assert_allclose(dots["optimizer.name=adam"], [[0.5, 1e-2]])  # at its centre
  assert "runs disagree\n(majority shown)" in labels
  assert "3 runs per cell, 1 of 24 cells uncertain" in title
  # the majority still colours the cell: 2 of 3 trained
  cells = panels.cell_regimes(df, axes).set_index(axes)
  assert cells.loc[(0.5, 1e-2, "adam"), "regime"] == "trained"
  one = maps.regime_figure(_sweep(), axes[:2])
  try:
    assert not any(isinstance(c, PathCollection) for ax in one.axes for c in ax.collections)
    assert "disagree" not in " ".join(t.get_text() for t in one.legends[0].get_texts())
  finally:
    plt.close(one)


def test_panel_titles_never_overlap_at_any_grid_size():
  """Issue 21: a 4-axis map's titles ("model.parameterization=standard, optimizer.name=
  adam") ran into their neighbours. Each title's rendered bounding box must lie within
  its own panel's horizontal extent, so no two overlap."""
  base = _sweep(("sgd", "adam", "lion", "momentum"))
  frames = []
  for p in ("standard", "mean_field"):
    frames.append(base.assign(**{"model.parameterization_long_name": p}))
  df = pd.concat(frames, ignore_index=True)
  axes = ["init.sigma_w", "optimizer.learning_rate", "model.parameterization_long_name",
          "optimizer.name"]
  fig = maps.regime_figure(df, axes)
  assert_titles_fit(fig, 8)
  plt.close(fig)


def test_stable_lr_plot_draws_no_trains_curve_where_nothing_trains():
  """Issue 21: at a large sigma_w every cell stalls, so 'largest stable lr' was large
  exactly where nothing trains. The summary now has a 'trains' curve, absent there (a
  cross instead), beside the 'does not blow up' curve; one panel per optimizer."""
  from gradlab.report.optimizers import stable_lr
  from gradlab.viz import lr_summary

  rows = []
  for opt in ("sgd", "adam"):
    for sigma in (1.0, 8.0):
      for lr in (0.01, 0.1, 1.0):
        regime = ("stalled" if sigma == 8.0 else
                  "trained" if lr < 1.0 else "diverged")
        rows.append({"optimizer.name": opt, "init.sigma_w": sigma,
                     "optimizer.learning_rate": lr, "regime": regime, "seed": 0,
                     "final_loss": 1.0, "test_accuracy": 0.5})
  df = pd.DataFrame(rows)
  axes = ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]
  table = stable_lr(df, axes).set_index(["variant", "init.sigma_w"])
  assert table.loc[("sgd", 1.0), "largest_trained_lr"] == 0.1
  assert table.loc[("sgd", 1.0), "largest_stable_lr"] == 0.1
  assert np.isnan(table.loc[("sgd", 8.0), "largest_trained_lr"])
  assert table.loc[("sgd", 8.0), "largest_stable_lr"] == 1.0
  fig = lr_summary.stable_lr_figure(df, axes)
  panels = {ax.get_title(): ax for ax in fig.axes}
  assert sorted(panels) == ["adam", "sgd"]
  lines = {ln.get_label(): ln for ln in panels["sgd"].get_lines()}
  trains = lines["trains"]
  assert list(trains.get_xdata()) == [1.0, 8.0]
  assert trains.get_ydata()[0] == 0.1 and np.isnan(trains.get_ydata()[1])
  assert list(lines["nothing trains"].get_xdata()) == [8.0]
  assert list(lines["does not blow up"].get_ydata()) == [0.1, 1.0]
  assert panels["sgd"].get_shared_y_axes().joined(panels["sgd"], panels["adam"])
  plt.close(fig)
