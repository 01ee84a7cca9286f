"""In-scan diagnostics (sharpness, onset, non-finite layer) and the init-time prediction."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from gradlab import prediction, results
from gradlab.sweep import run_sweep


def test_in_scan_sharpness_equals_the_quadratic_hessian_top_eigenvalue(teacher):
  """Linear model + mse + full batch: the loss is a quadratic whose Hessian w.r.t. each
  output's (weights, bias) is [X 1]^T [X 1] / n, so its top eigenvalue is known."""
  from gradlab.train import train_one

  cfg = tiny_config(model=dict(name="linear"), train=dict(loss="mse", steps=20, log_every=5),
                    data=dict(batch_size=0), optimizer=dict(name="sgd", learning_rate=1e-3),
                    diagnostics=dict(every=10, power_iters=100))
  traj = train_one(cfg, teacher)
  x1 = np.concatenate([teacher.x_train, np.ones((len(teacher.x_train), 1))], axis=1)
  lam_max = np.linalg.eigvalsh(x1.T @ x1 / len(x1)).max()
  assert list(np.asarray(traj.sharpness_step)) == [0, 10]
  np.testing.assert_allclose(np.asarray(traj.sharpness), lam_max, rtol=1e-3)
  assert np.all(np.isnan(np.asarray(traj.preconditioned_sharpness)))  # sgd: no Adam state


def test_adam_preconditioned_sharpness_is_measured_from_step_zero(teacher):
  from gradlab.train import train_one

  cfg = tiny_config(optimizer=dict(name="adam"), diagnostics=dict(every=10))
  traj = train_one(cfg, teacher)
  p = np.asarray(traj.preconditioned_sharpness)
  assert p.shape == (2,) and np.all(np.isfinite(p)) and np.all(p > 0)


def test_diverged_run_names_the_readout_as_first_nonfinite_layer(tmp_path):
  # lr 1e38: the hidden pre-activations stay finite (tanh is bounded) but the logits
  # overflow: the forward pass meets the first non-finite value at the readout.
  cfg = tiny_config({"optimizer.learning_rate": [0.05, 1e38]}, optimizer=dict(name="sgd"))
  run_sweep(cfg, str(tmp_path), progress=False)
  df = results.load(str(tmp_path)).set_index("optimizer.learning_rate")
  assert df.loc[1e38, "first_nonfinite_layer"] == "readout"
  assert df.loc[0.05, "first_nonfinite_layer"] == ""
  assert {"predicted_regime", "explosion_layer", "depth_gain"} <= set(df.columns)
  report = (tmp_path / "report.md")
  assert not report.exists()  # the engine writes rows; figures.draw_all writes the report
  from gradlab.figures import draw_all

  draw_all(str(tmp_path))
  assert "Predicted vs observed regime" in report.read_text()


@pytest.mark.parametrize("gain, sharp, thr, want", [
  (1.0, np.nan, np.nan, "trained"),
  (1e3, np.nan, np.nan, "exploding"),
  (1e-4, np.nan, np.nan, "stalled"),
  (1.0, 50.0, 20.0, "exploding"),     # sharper than 2/lr at init
  (1e-4, 10.0, 20.0, "stalled"),
])
def test_prediction_rule(gain, sharp, thr, want):
  got = prediction.predict(np.array([gain]), np.array([sharp]), np.array([thr]), 1e-2, 1e2)
  assert got[0] == want


def test_depth_gain_and_thresholds():
  g = np.array([[8.0, 4.0, 2.0, 1.0, 5.0]])  # 4 hidden layers and a readout
  np.testing.assert_allclose(prediction.depth_gain(g, 4), [8.0])
  thr = prediction.initial_threshold("sgd", {"learning_rate": np.array([0.1, 0.5])})
  np.testing.assert_allclose(thr, [20.0, 4.0])
  thr = prediction.initial_threshold("momentum", {"learning_rate": np.array([0.1]),
                                                  "momentum": np.array([0.9])})
  np.testing.assert_allclose(thr, [(2 + 2 * 0.9) / 0.1])
  assert np.isnan(prediction.initial_threshold("lion", {"learning_rate": np.array([0.1])})[0])
