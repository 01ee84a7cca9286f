"""Figures read as a reader would (issue 21): no raw Python in any text, cells of equal
size on unevenly spaced axes, and no curve hidden under another."""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import hand_sweep

from gradlab import compare
from gradlab.viz import compare as compare_viz
from gradlab.viz import lr_summary, maps, through_time

AXES = ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]
RAW = re.compile(r"\bNone\b|\bnan\b|\bNaN\b|object at 0x|\{'|\['")


def figure_texts(fig) -> list[str]:
  """Every string drawn on `fig`: suptitle, titles, axis labels, tick labels, legends,
  annotations and free text."""
  texts = [t.get_text() for t in fig.findobj(match=lambda a: hasattr(a, "get_text"))]
  return [t for t in texts if isinstance(t, str) and t]


def _sweep_with_holes() -> pd.DataFrame:
  """hand_sweep with a third optimizer that never trains, NaN test accuracies and
  non-finite losses: the cases that used to print None or nan."""
  df = hand_sweep(("sgd", "adam"))
  never = hand_sweep(("lion",)).assign(regime="stalled", final_loss=np.inf,
                                        test_accuracy=np.nan)
  return pd.concat([df, never], ignore_index=True)


def _checked(fig) -> list[str]:
  texts = figure_texts(fig)
  plt.close(fig)
  bad = [t for t in texts if RAW.search(t)]
  assert not bad, bad
  return texts


def test_no_raw_python_in_the_maps_and_the_lr_summary():
  df = _sweep_with_holes()
  _checked(maps.regime_figure(df, AXES))
  texts = _checked(maps.final_loss_figure(df, AXES))
  assert any("non-finite" in t for t in texts)
  texts = _checked(lr_summary.stable_lr_figure(df, AXES))
  assert "nothing trains" in texts


def test_no_raw_python_in_gradients_through_time_without_a_rho_axis():
  """A sweep without init.spectral_radius used to label its curve 'rho=nan'."""
  df = pd.DataFrame({"run_id": [0, 1], "model.name": ["elman", "elman"]})
  curves = {0: np.geomspace(1e-3, 1, 20), 1: np.geomspace(1e-2, 1, 20)}
  texts = _checked(through_time.through_time_figure(df, curves))
  assert "median over runs" in texts


def test_no_raw_python_in_the_comparison():
  a = hand_sweep(("sgd",))
  b = a.assign(regime=np.where(a["optimizer.learning_rate"] == 1e-1, "trained", a["regime"]))
  axes = AXES[:2]
  result = compare.compare_runs(a, b, axes)
  _checked(compare_viz.compare_figure(result, "none", "clip"))


def test_an_unevenly_spaced_axis_gets_one_equal_cell_per_value():
  """Adam's epsilon 1e-8, 1e-5, ..., 1e-2 was drawn on a log axis with the 1e-8 row three
  times taller than the others; every row is now one cell high, labelled by its value,
  and a line between grid values sits where log interpolation puts it."""
  eps = [1e-8, 1e-5, 1e-4, 1e-3, 1e-2]
  rows = [{"model.width": w, "optimizer.eps": e, "regime": "trained", "final_loss": 1.0}
          for w in (64, 128, 256) for e in eps]
  df = pd.DataFrame(rows)
  line = maps.MapLine("eps = 1e-6", {"optimizer.eps": [1e-6]})
  fig = maps.regime_figure(df, ["model.width", "optimizer.eps"], lambda values: [line])
  ax = fig.axes[0]
  mesh = next(c for c in ax.collections if hasattr(c, "get_coordinates"))
  edges = mesh.get_coordinates()[:, 0, 1]
  labels = [t.get_text() for t in ax.get_yticklabels()]
  drawn = [ln for ln in ax.get_lines() if ln.get_label() == "eps = 1e-6"]
  scale = ax.get_yscale()
  plt.close(fig)
  assert scale == "linear"
  assert np.allclose(np.diff(edges), 1.0)
  assert labels == ["1e-8", "1e-5", "1e-4", "1e-3", "0.01"]
  assert drawn[0].get_ydata()[0] == pytest.approx(2.0 / 3.0)  # 1e-6 between 1e-8 and 1e-5


def test_the_trains_curve_stays_visible_under_the_does_not_blow_up_curve():
  """Where both curves coincide (every stable cell trains) the wide pale 'trains' line
  sits under the thin dashed one, so both show."""
  fig = lr_summary.stable_lr_figure(hand_sweep(("sgd",)), AXES)
  lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
  trains, safe = lines["trains"], lines["does not blow up"]
  plt.close(fig)
  assert trains.get_linewidth() >= 2.5 * safe.get_linewidth()
  assert trains.get_zorder() < safe.get_zorder()
  assert np.allclose(trains.get_ydata()[:3], safe.get_ydata()[:3], equal_nan=True)
  assert math.isnan(trains.get_ydata()[-1])  # sigma_w 4: no trained learning rate


def test_ln_depth_ticks_the_depths_and_plain_numbers(monkeypatch):
  """ln_depth.png ticked its depths 2^1, 2^2, ... and its y axis (under a decade)
  2 x 10^0, 6 x 10^-1: now 2, 4, 8, 16 and plain numbers."""
  from gradlab.diagnostics.ln_depth import DEPTH_AXIS, LN_AXIS
  from gradlab.viz import ln_depth

  depths = [2, 4, 8, 16]
  table = pd.DataFrame({LN_AXIS: ["post"] * 4 + ["pre"] * 4, DEPTH_AXIS: depths * 2,
                        "init_last_block_grad_norm": [1.3, 1.6, 2.2, 2.2, 1.5, 1.1, 1.1, 0.6]})
  monkeypatch.setattr(ln_depth, "init_grad_by_depth", lambda workdir, df: table)
  drawn = []
  monkeypatch.setattr(ln_depth.canvas, "save_figure",
                      lambda fig, path: drawn.append(fig) or path)
  ln_depth.draw("unused", table, ["optimizer.learning_rate", DEPTH_AXIS, LN_AXIS])
  fig = drawn[0]
  fig.canvas.draw()
  ax = fig.axes[0]
  x_labels = [t.get_text() for t in ax.get_xticklabels()]
  y_labels = [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
  texts = _checked(fig)
  assert x_labels == ["2", "4", "8", "16"]
  assert y_labels and not any("times" in t for t in y_labels), y_labels
  assert any("slope" in t for t in texts)
