"""In-scan diagnostics (sharpness, onset, non-finite layer) and the init-time prediction."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from gradlab import prediction, results
from gradlab.report.prediction import report_section
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


def test_adam_preconditioned_sharpness_at_step_zero_is_the_closed_form(teacher):
  """Linear model + mse (0.5 mean ||f - onehot||^2) + full batch, Adam: before Adam's
  first step the preconditioner is the one that step will use, P = |g| + eps
  (nu_hat = g^2), so the step-0 preconditioned sharpness is the top eigenvalue of
  P^-1/2 H P^-1/2, with H = [X 1]^T [X 1] / n per output (weights and bias) and
  g = [X 1]^T (f - onehot) / n at the initial parameters, computed here with numpy."""
  import jax

  from gradlab.models import build_model
  from gradlab.train import hparams_from_config, init_variables, train_one

  cfg = tiny_config(model=dict(name="linear"), train=dict(loss="mse", steps=20, log_every=5),
                    data=dict(batch_size=0), optimizer=dict(name="adam", learning_rate=1e-3),
                    diagnostics=dict(every=10, power_iters=200))
  traj = train_one(cfg, teacher)
  # the initial parameters as run() makes them: the first of split(key, 3), then scaled
  hp = {k: np.float32(v) for k, v in hparams_from_config(cfg).items()}
  init_key = jax.random.split(jax.random.PRNGKey(int(cfg.train.seed)), 3)[0]
  params, _ = init_variables(build_model(cfg, teacher.num_classes), init_key,
                             np.asarray(teacher.x_train[:1]), hp)
  wb = np.concatenate([np.asarray(params["readout"]["kernel"], np.float64),
                       np.asarray(params["readout"]["bias"], np.float64)[None]], axis=0)
  x1 = np.concatenate([np.asarray(teacher.x_train, np.float64),
                       np.ones((len(teacher.x_train), 1))], axis=1)
  onehot = np.eye(wb.shape[1])[np.asarray(teacher.y_train)]
  g = x1.T @ (x1 @ wb - onehot) / len(x1)                 # (F+1, K)
  h = x1.T @ x1 / len(x1)                                 # the same for every output k
  d = 1.0 / np.sqrt(np.abs(g) + float(cfg.optimizer.eps))  # P^-1/2, column k for output k
  lam = max(np.linalg.eigvalsh(d[:, k, None] * h * d[None, :, k]).max()
            for k in range(g.shape[1]))
  p = np.asarray(traj.preconditioned_sharpness)
  assert list(np.asarray(traj.sharpness_step)) == [0, 10]
  np.testing.assert_allclose(p[0], lam, rtol=2e-3)
  assert np.isfinite(p[1]) and p[1] > 0


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
  assert not report.exists()  # the engine writes rows; viz.draw_all writes the report
  from gradlab.viz import draw_all

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


def _chunk(g0, sharpness, preconditioned=None, onset_layer=None):
  """A chunk's trajectory as `prediction.columns` reads it: step-0 per-layer gradient
  norms g0 (R, L) and two sharpness measurements per run (initial, final)."""
  g0 = np.asarray(g0, float)
  sharp = np.asarray(sharpness, float)
  runs = len(g0)
  onset = SimpleNamespace(onset_layer=np.asarray(onset_layer if onset_layer is not None
                                                 else [-1] * runs),
                          nonfinite_layer=np.full(runs, -1))
  return SimpleNamespace(grad_norm_by_layer=np.stack([g0, g0 * 0.5], axis=1),
                         sharpness=sharp, onset=onset,
                         preconditioned_sharpness=(np.asarray(preconditioned, float)
                                                   if preconditioned is not None
                                                   else np.full_like(sharp, np.nan)))


def _cfg(name):
  return SimpleNamespace(optimizer=SimpleNamespace(name=name),
                         regimes=SimpleNamespace(vanish_gain=1e-2, explode_gain=1e2))


LAYERS = ["dense_0", "dense_1", "dense_2", "readout"]  # 3 hidden layers: gain g[0] / g[2]


def test_prediction_columns_give_the_hand_computed_labels():
  """sgd, threshold 2/lr: run 0 flat gradients and sharpness 10 < 20 (trained); run 1
  gain 1000 > explode_gain 100 (exploding); run 2 gain 1e-3 < vanish_gain 1e-2
  (stalled); run 3 sharpness 5 > 2/0.5 = 4 (exploding); run 4 NaN sharpness is ignored
  (trained); the last lane is padding (n = 5) and must not show up."""
  g0 = [[1, 1, 1, 7], [1000, 10, 1, 7], [1e-3, 1, 1, 7], [2, 2, 2, 7], [3, 3, 3, 7],
        [1e9, 1, 1, 1]]
  sharp = [[10, 11], [1, 1], [1, 1], [5, 6], [np.nan, np.nan], [1e9, 1e9]]
  traj = _chunk(g0, sharp, onset_layer=[-1, 3, 0, -1, -1, 1])
  lr = np.array([0.1, 0.1, 0.1, 0.5, 0.1, 1e-9])
  out = prediction.columns(traj, 5, _cfg("sgd"), LAYERS, {"learning_rate": lr})
  assert list(out["predicted_regime"]) == ["trained", "exploding", "stalled", "exploding",
                                           "trained"]
  np.testing.assert_allclose(out["depth_gain"], [1.0, 1000.0, 1e-3, 1.0, 1.0])
  np.testing.assert_allclose(out["sharpness_threshold"], [20.0, 20.0, 20.0, 4.0, 20.0])
  np.testing.assert_allclose(out["initial_sharpness"], [10, 1, 1, 5, np.nan])
  np.testing.assert_allclose(out["final_sharpness"], [11, 1, 1, 6, np.nan])
  assert list(out["explosion_layer"]) == ["", "readout", "dense_0", "", ""]


def test_momentum_and_adam_thresholds_decide_the_prediction():
  """momentum: (2 + 2 beta) / lr = 3.8 / 0.1 = 38, so sharpness 30 trains and 40 explodes.
  adam: (2 + 2 b1) / ((1 - b1) lr) = 3.8 / (0.1 * 1e-3) = 38000 against the PRECONDITIONED
  sharpness: a plain sharpness far above it does not count."""
  flat = [[1, 1, 1, 1]] * 2
  hp = {"learning_rate": np.array([0.1, 0.1]), "momentum": np.array([0.9, 0.9])}
  out = prediction.columns(_chunk(flat, [[30, 30], [40, 40]]), 2, _cfg("momentum"), LAYERS, hp)
  np.testing.assert_allclose(out["sharpness_threshold"], [38.0, 38.0])
  assert list(out["predicted_regime"]) == ["trained", "exploding"]
  hp = {"learning_rate": np.array([1e-3, 1e-3]), "b1": np.array([0.9, 0.9])}
  traj = _chunk(flat, [[1e6, 1e6], [1e6, 1e6]], preconditioned=[[3e4, 3e4], [4e4, 4e4]])
  out = prediction.columns(traj, 2, _cfg("adam"), LAYERS, hp)
  np.testing.assert_allclose(out["sharpness_threshold"], [38000.0, 38000.0])
  np.testing.assert_allclose(out["initial_sharpness"], [3e4, 4e4])
  assert list(out["predicted_regime"]) == ["trained", "exploding"]


def test_report_section_counts_agreement_and_the_confusion_table():
  """Exact matches 3 of 5 (60%); stable-vs-unstable matches 4 of 5 (80%): only the run
  predicted trained that exploded is on the wrong side."""
  df = pd.DataFrame({"predicted_regime": ["trained", "exploding", "stalled", "exploding",
                                          "trained"],
                     "regime": ["trained", "diverged", "stalled", "exploding", "exploding"]})
  text = report_section(df)
  assert "matched the observed one in 60% of 5 runs" in text
  assert "stable-vs-unstable (exploding or diverged) matched in 80%." in text
  rows = [ln for ln in text.splitlines() if ln.startswith("|")]
  assert rows[0] == "| predicted \\ observed | diverged | exploding | stalled | trained |"
  assert rows[2:] == ["| exploding | 1 | 1 | 0 | 0 |", "| stalled | 0 | 0 | 1 | 0 |",
                      "| trained | 0 | 1 | 0 | 1 |"]
  assert report_section(df.drop(columns="predicted_regime")) == ""
