"""Theory lines over the maps: the critical sigma_w and the trainable-depth curve are
where the mean-field theory puts them, on the right panels, and draw_all draws them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from gradlab import theory
from gradlab.config import to_dict
from gradlab.diagnostics import mean_field
from gradlab.panels import cell_edges
from gradlab.viz import canvas, maps, overlays


def _frame(axes: dict[str, list]) -> pd.DataFrame:
  """A full grid over `axes`, every cell 'trained'."""
  keys = list(axes)
  grid = np.meshgrid(*axes.values(), indexing="ij")
  df = pd.DataFrame({k: g.ravel() for k, g in zip(keys, grid, strict=True)})
  return df.assign(regime="trained", final_loss=1.0, run_id=np.arange(len(df)))


def _config(**sections) -> dict:
  return to_dict(tiny_config(**sections))


SIGMA_W = [0.5, 0.71, 1.0, 1.41, 2.0, 2.83]


@pytest.mark.parametrize("activation, family, want", [
  ("tanh", "lecun", 1.0), ("relu", "lecun", np.sqrt(2.0)), ("relu", "he", 1.0),
  ("linear", "lecun", 1.0)])
def test_critical_sigma_w_at_zero_bias(activation, family, want):
  assert mean_field.critical_sigma_w(activation, 0.0, family) == pytest.approx(want, rel=1e-9)


def test_critical_sigma_w_with_bias_and_without_biases():
  want = np.sqrt(theory.critical_sigma_w2("tanh", 0.05))
  assert want > 1.3  # sigma_b2 = 0.05 moves tanh's critical point to sigma_w ~ 1.33
  assert mean_field.critical_sigma_w("tanh", np.sqrt(0.05)) == pytest.approx(want, rel=1e-9)
  # use_bias False: sigma_b is irrelevant, the line is the sigma_b = 0 one.
  assert mean_field.critical_sigma_w("tanh", 0.5, use_bias=False) == pytest.approx(1.0)


def test_vertical_critical_line_over_sigma_w_by_learning_rate():
  df = _frame({"init.sigma_w": SIGMA_W, "optimizer.learning_rate": [1e-3, 1e-2, 1e-1]})
  for act, x in (("tanh", 1.0), ("relu", np.sqrt(2.0))):
    lines = overlays.map_lines(_config(model=dict(activation=act)),
                               ["init.sigma_w", "optimizer.learning_rate"], df)({})
    assert len(lines) == 1 and list(lines[0].coords) == ["init.sigma_w"]
    assert lines[0].coords["init.sigma_w"][0] == pytest.approx(x, rel=1e-9)
    assert "chi_1 = 1" in lines[0].label
  # sigma_w on y, the learning rate on x: the same line, now horizontal.
  lines = overlays.map_lines(_config(), ["optimizer.learning_rate", "init.sigma_w"], df)({})
  assert list(lines[0].coords) == ["init.sigma_w"]


def test_critical_curve_over_sigma_w_by_sigma_b():
  df = _frame({"init.sigma_w": SIGMA_W, "init.sigma_b": [0.0, 0.1, 0.2, 0.3]})
  (line,) = overlays.map_lines(_config(), ["init.sigma_w", "init.sigma_b"], df)({})
  w, b = np.asarray(line.coords["init.sigma_w"]), np.asarray(line.coords["init.sigma_b"])
  assert b[0] == 0.0 and w[0] == pytest.approx(1.0, rel=1e-9)
  for i in (len(b) // 2, len(b) - 1):
    assert w[i] == pytest.approx(np.sqrt(theory.critical_sigma_w2("tanh", b[i] ** 2)), 1e-9)
  assert np.all(np.diff(w) > 0)  # bias variance pushes the critical point up


def test_trainable_depth_curve_is_six_xi_c():
  for act, sw, sb in (("tanh", 0.8, 0.0), ("tanh", 2.0, np.sqrt(0.05)), ("relu", 1.0, 0.1)):
    got = mean_field.trainable_depth(act, sw, sb)
    assert got == pytest.approx(6.0 * theory.xi_c(act, sw**2, sb**2), rel=1e-12)
  assert mean_field.trainable_depth("tanh", 0.8, 0.0) == pytest.approx(-6.0 / np.log(0.64))
  df = _frame({"init.sigma_w": SIGMA_W, "model.depth": [2, 4, 8, 16, 32]})
  cfg = _config(init=dict(sigma_b=float(np.sqrt(0.05))))
  crit, depth = overlays.map_lines(cfg, ["init.sigma_w", "model.depth"], df)({})
  assert crit.coords["init.sigma_w"][0] == pytest.approx(
    np.sqrt(theory.critical_sigma_w2("tanh", 0.05)), rel=1e-9)
  w, d = np.asarray(depth.coords["init.sigma_w"]), np.asarray(depth.coords["model.depth"])
  for i in (3, 30):
    assert d[i] == pytest.approx(6.0 * theory.xi_c("tanh", w[i] ** 2, 0.05), rel=1e-9)
  assert w[0] < 0.5 and w[-1] > 2.83  # the curve spans the drawn extent
  assert "6 xi_c" in depth.label


def test_no_lines_where_the_theory_does_not_apply():
  df = _frame({"init.sigma_w": SIGMA_W, "optimizer.learning_rate": [1e-3, 1e-2]})
  axes = ["init.sigma_w", "optimizer.learning_rate"]
  assert overlays.map_lines(_config(model=dict(layer_norm=True)), axes, df)({}) == []
  assert overlays.map_lines(_config(model=dict(name="linear")), axes, df)({}) == []
  assert overlays.map_lines(_config(), axes[::-1][:1], df) is None  # no sigma_w axis
  by_act = _frame({"init.sigma_w": SIGMA_W, "model.activation": ["tanh", "relu"]})
  assert overlays.map_lines(_config(), ["init.sigma_w", "model.activation"], by_act) is None
  # a line outside the drawn sigma_w range is not drawn
  narrow = _frame({"init.sigma_w": [4.0, 8.0], "optimizer.learning_rate": [1e-3, 1e-2]})
  assert overlays.map_lines(_config(), axes, narrow)({}) == []


def test_panels_get_their_own_line_in_the_figure():
  axes = ["init.sigma_w", "optimizer.learning_rate", "model.activation"]
  df = _frame({"init.sigma_w": SIGMA_W, "optimizer.learning_rate": [1e-3, 1e-2],
               "model.activation": ["relu", "tanh"]})
  fig = maps.regime_figure(df, axes, overlays.map_lines(_config(), axes, df))
  panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
  for title, x in (("model.activation=relu", np.sqrt(2.0)), ("model.activation=tanh", 1.0)):
    (line,) = panels[title].get_lines()
    np.testing.assert_allclose(line.get_xdata(), [x, x], rtol=1e-9)
  legend = [t.get_text() for t in fig.legends[0].get_texts()]
  assert "trained" in legend and sum("chi_1 = 1" in t for t in legend) == 2
  xlim = panels["model.activation=tanh"].get_xlim()
  plt.close(fig)
  np.testing.assert_allclose(xlim, cell_edges(SIGMA_W)[[0, -1]])  # limits kept


def test_draw_all_puts_the_line_on_both_maps(tmp_path, monkeypatch):
  from gradlab.sweep import run_sweep
  from gradlab.viz import draw_all

  cfg = tiny_config({"init.sigma_w": [0.5, 1.0, 2.0], "optimizer.learning_rate": [0.01, 0.1]},
                    optimizer=dict(name="sgd"))
  run_sweep(cfg, str(tmp_path), progress=False)
  drawn = {}
  save = canvas.save_figure

  def spy(fig, path):
    drawn[path.rsplit("/", 1)[-1]] = [ln.get_xdata() for ax in fig.axes for ln in ax.get_lines()]
    return save(fig, path)

  monkeypatch.setattr(canvas, "save_figure", spy)
  draw_all(str(tmp_path))
  for name in ("regime_map.png", "final_loss.png"):
    (x,) = drawn[name]
    np.testing.assert_allclose(x, [1.0, 1.0], rtol=1e-9)
