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
  first step the preconditioner is the one that step will use, P = (1 - b1) (|g| + eps)
  (nu_hat = g^2, and Cohen et al. 2022's first-moment factor 1 - b1^(t+1)), so the
  step-0 preconditioned sharpness is the top eigenvalue of
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
  b1 = float(hp["b1"])  # P = (1 - b1^(t+1)) (|g| + eps) at t = 0 (Cohen et al. 2022)
  d = 1.0 / np.sqrt((1 - b1) * (np.abs(g) + float(hp["eps"])))  # P^-1/2 per output
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


NAN = np.nan


def _signals(ratio=NAN, gain=NAN, over=NAN, progress=NAN, early=NAN):
  arr = lambda x: np.array([x], float)
  return prediction.Signals(arr(ratio), arr(gain), arr(over), arr(progress), arr(early))


MSE = dict(catapult_max=4.0, unstable="diverged")  # a loss with a known window


@pytest.mark.parametrize("signals, rule, want", [
  (dict(), {}, "trained"),                                        # nothing known
  (dict(ratio=0.5, gain=1.0, progress=100.0, early=0.9), MSE, "trained"),
  (dict(ratio=1.5), MSE, "catapult"),                             # lr lambda_0 = 3 in (2, 4)
  (dict(ratio=2.5), MSE, "diverged"),                             # lr lambda_0 = 5 > c_max 4
  (dict(ratio=2.5, gain=1e-4), MSE, "diverged"),                  # the window comes first
  (dict(ratio=2.5), {}, "trained"),                               # cross-entropy: no window
  (dict(early=1.11), {}, "exploding"),                            # climbing after one block
  (dict(early=1.09), {}, "trained"),                              # within minibatch noise
  (dict(gain=1e3), {}, "stalled"),                                # chaotic: starts saturated
  (dict(gain=1e3), dict(scale_dependent=False), "stalled"),
  (dict(gain=1e-4), {}, "stalled"),                               # vanishing, sgd
  (dict(gain=1e-4), dict(scale_dependent=False), "trained"),      # vanishing, adam
  (dict(over=1.5), {}, "stalled"),                                # deeper than 6 xi_c
  (dict(progress=5.0), {}, "stalled"),                            # the first step is too small
  (dict(progress=5.0), dict(scale_dependent=False), "trained"),
  (dict(ratio=0.5, over=0.5, progress=20.0), MSE, "trained"),
])
def test_prediction_rule(signals, rule, want):
  assert prediction.predict(_signals(**signals), prediction.Rule(**rule))[0] == want


def test_rule_for_picks_the_window_the_label_and_the_step_kind():
  regimes = SimpleNamespace(vanish_gain=1e-3, explode_gain=50.0)
  mse = prediction.rule_for("adam", "mse", regimes)
  assert (mse.catapult_max, mse.unstable, mse.scale_dependent) == (4.0, "diverged", False)
  ce = prediction.rule_for("sgd", "cross_entropy", regimes)
  assert np.isnan(ce.catapult_max) and ce.unstable == "exploding" and ce.scale_dependent
  assert (ce.vanish_gain, ce.explode_gain) == (1e-3, 50.0)


def test_depth_gain_reads_the_declared_hidden_layers_and_is_nan_without_them():
  g = np.array([[8.0, 4.0, 2.0, 1.0, 5.0]])  # 4 hidden layers and a readout
  np.testing.assert_allclose(prediction.depth_gain(g, [0, 1, 2, 3]), [8.0])
  np.testing.assert_allclose(prediction.depth_gain(g, [1, 2]), [2.0])
  assert np.isnan(prediction.depth_gain(g, [])[0])              # a family that declares none
  assert np.isnan(prediction.depth_gain(g[:, :0], [0, 1])[0])   # train.layer_probes off


def test_thresholds_at_the_step_zero_learning_rate():
  thr = prediction.initial_threshold("sgd", {"learning_rate": np.array([0.1, 0.5])})
  np.testing.assert_allclose(thr, [20.0, 4.0])
  thr = prediction.initial_threshold("momentum", {"learning_rate": np.array([0.1]),
                                                  "momentum": np.array([0.9])})
  np.testing.assert_allclose(thr, [(2 + 2 * 0.9) / 0.1])
  hp = {"learning_rate": np.array([1e-3, 1e-3]), "b1": np.array([0.9, 0.9])}
  for name in ("adam", "adamw", "nadam", "gadam"):  # Adam's P: (2 + 2 b1) / ((1 - b1) lr)
    np.testing.assert_allclose(prediction.initial_threshold(name, hp), [38000.0] * 2)
  # a warmup from 0: the step-0 rate is 0, nothing is too sharp (not 2 / peak)
  np.testing.assert_allclose(prediction.initial_threshold("sgd", hp, np.array([0.0, 1e-3])),
                             [np.inf, 2000.0])
  for name in ("lion", "rmsprop", "adamax", "radam", "yogi", "lamb"):
    assert np.isnan(prediction.initial_threshold(name, hp)[0])


def test_adam_preconditioned_chains_hold_adams_state():
  """Every chain whose sharpness is compared preconditioned holds a ScaleByAdamState
  (the preconditioner is read from it); the excluded look-alikes are not compared so."""
  import jax.numpy as jnp

  from gradlab.diagnostics import hessian
  from gradlab.optim import HPARAM_DEFAULTS, OPTIMIZERS

  hp = {k: jnp.asarray(v, jnp.float32) for k, v in HPARAM_DEFAULTS.items()}
  params = {"w": jnp.ones((3, 3))}
  for name in prediction.ADAM_PRECONDITIONED:
    assert hessian.has_adam_state(OPTIMIZERS.get(name)(hp).init(params)), name
  assert not {"adamax", "radam", "yogi", "lamb", "adopt", "muon"} & set(
    prediction.ADAM_PRECONDITIONED)


def _chunk(g0, sharpness, preconditioned=None, onset_layer=None, grad=1.0, update=0.1,
           param=10.0, initial_loss=2.0):
  """A chunk's trajectory as `prediction.columns` reads it: step-0 per-layer gradient
  norms g0 (R, L), two sharpness measurements per run (steps 0 and 10, converged after
  7 iterations), and the step-0 global gradient, update and parameter norms."""
  g0 = np.asarray(g0, float)
  sharp = np.asarray(sharpness, float)
  runs = len(g0)
  onset = SimpleNamespace(onset_layer=np.asarray(onset_layer if onset_layer is not None
                                                 else [-1] * runs),
                          nonfinite_layer=np.full(runs, -1))
  pre = (np.asarray(preconditioned, float) if preconditioned is not None
         else np.full_like(sharp, np.nan))
  full = lambda v: np.full((runs, 2), v, float)
  return SimpleNamespace(
    grad_norm_by_layer=np.stack([g0, g0 * 0.5], axis=1), sharpness=sharp, onset=onset,
    preconditioned_sharpness=pre, sharpness_step=np.tile([0, 10], (runs, 1)),
    sharpness_iters=np.full((runs, 2), 7), sharpness_converged=np.ones((runs, 2), bool),
    preconditioned_sharpness_iters=np.full((runs, 2), 9),
    preconditioned_sharpness_converged=np.array([[True, False]] * runs),
    grad_norm=full(grad), update_norm=full(update), param_norm=full(param),
    initial_loss=np.full(runs, initial_loss), loss=full(initial_loss))


def _cfg(name, steps=100):
  return SimpleNamespace(optimizer=SimpleNamespace(name=name),
                         train=SimpleNamespace(steps=steps),
                         regimes=SimpleNamespace(vanish_gain=1e-2, explode_gain=1e2,
                                                 stall_fraction=0.05))


LAYERS = ["dense_0", "dense_1", "dense_2", "readout"]
HIDDEN = ("dense_0", "dense_1", "dense_2")  # gain g[0] / g[2]


def test_prediction_columns_give_the_hand_computed_labels():
  """sgd, mse (c_max 4): lr 0.1 -> threshold 20. Run 0: sharpness 10 (r = 0.5), flat
  gradients: trained. Run 1: gain 1000 > 100: stalled (chaotic). Run 2: gain 1e-3: stalled.
  Run 3: sharpness 50 (r = 2.5 > c_max / 2): diverged. Run 4: sharpness 30 (r = 1.5):
  catapult. Run 5: NaN sharpness, gain 1: trained. The last lane is padding (n = 6).
  progress = steps g u / (stall_fraction L0) = 100 * 1 * 0.1 / (0.05 * 2) = 100."""
  g0 = [[1, 1, 1, 7], [1000, 10, 1, 7], [1e-3, 1, 1, 7], [2, 2, 2, 7], [3, 3, 3, 7],
        [1, 1, 1, 7], [1e9, 1, 1, 1]]
  sharp = [[10, 11], [1, 1], [1, 1], [50, 6], [30, 30], [NAN, NAN], [1e9, 1e9]]
  traj = _chunk(g0, sharp, onset_layer=[-1, 3, 0, -1, -1, -1, 1])
  lr = np.full(7, 0.1)
  out = prediction.columns(traj, 6, _cfg("sgd"), LAYERS, {"learning_rate": lr},
                           hidden_layers=HIDDEN, loss="mse")
  assert list(out["predicted_regime"]) == ["trained", "stalled", "stalled", "diverged",
                                           "catapult", "trained"]
  np.testing.assert_allclose(out["depth_gain"], [1.0, 1000.0, 1e-3, 1.0, 1.0, 1.0])
  np.testing.assert_allclose(out["sharpness_threshold"], [20.0] * 6)
  np.testing.assert_allclose(out["sharpness_ratio"], [0.5, 0.05, 0.05, 2.5, 1.5, NAN])
  np.testing.assert_allclose(out["initial_sharpness"], [10, 1, 1, 50, 30, NAN])
  np.testing.assert_allclose(out["final_sharpness"], [11, 1, 1, 6, 30, NAN])
  np.testing.assert_allclose(out["initial_sharpness_iters"], [7] * 6)
  assert out["initial_sharpness_converged"].all()
  np.testing.assert_allclose(out["progress"], [100.0] * 6)
  np.testing.assert_allclose(out["update_ratio"], [0.01] * 6)
  assert np.isnan(out["depth_limit"]).all()
  np.testing.assert_allclose(out["early_loss_ratio"], [1.0] * 6)
  assert list(out["explosion_layer"]) == ["", "readout", "dense_0", "", "", ""]
  # no declared hidden layers: no gain, the rest decides
  out = prediction.columns(traj, 6, _cfg("sgd"), LAYERS, {"learning_rate": lr}, loss="mse")
  assert np.isnan(out["depth_gain"]).all()
  assert list(out["predicted_regime"]) == ["trained", "trained", "trained", "diverged",
                                           "catapult", "trained"]


def test_momentum_adam_and_progress_decide_the_prediction():
  """momentum: (2 + 2 beta) / lr = 38 at lr 0.1, so sharpness 30 trains and 40 is in the
  catapult window. adam: 38000 at lr 1e-3 against the PRECONDITIONED sharpness (a plain
  sharpness far above it does not count); its convergence columns are the
  preconditioned one's. A tiny first step (progress < 10) predicts stalled; the mean-field
  depth limit 2 < 3 hidden layers predicts stalled."""
  flat = [[1, 1, 1, 1]] * 2
  hp = {"learning_rate": np.array([0.1, 0.1]), "momentum": np.array([0.9, 0.9])}
  out = prediction.columns(_chunk(flat, [[30, 30], [40, 40]]), 2, _cfg("momentum"), LAYERS,
                           hp, hidden_layers=HIDDEN, loss="mse")
  np.testing.assert_allclose(out["sharpness_threshold"], [38.0, 38.0])
  assert list(out["predicted_regime"]) == ["trained", "catapult"]
  hp = {"learning_rate": np.array([1e-3, 1e-3]), "b1": np.array([0.9, 0.9])}
  traj = _chunk(flat, [[1e6, 1e6], [1e6, 1e6]], preconditioned=[[3e4, 3e4], [4e4, 4e4]])
  out = prediction.columns(traj, 2, _cfg("adam"), LAYERS, hp, hidden_layers=HIDDEN,
                           loss="mse")
  np.testing.assert_allclose(out["sharpness_threshold"], [38000.0, 38000.0])
  np.testing.assert_allclose(out["initial_sharpness"], [3e4, 4e4])
  np.testing.assert_allclose(out["initial_sharpness_iters"], [9, 9])
  assert out["initial_sharpness_converged"].all() and not out["final_sharpness_converged"].any()
  assert list(out["predicted_regime"]) == ["trained", "catapult"]
  slow = _chunk(flat, [[1, 1], [1, 1]], update=1e-4)  # progress 100 * 1e-4 / 0.1 = 0.1
  out = prediction.columns(slow, 2, _cfg("sgd"), LAYERS, {"learning_rate": np.full(2, 0.1)},
                           hidden_layers=HIDDEN, depth_limit=np.array([2.0, 6.0]))
  assert list(out["predicted_regime"]) == ["stalled", "stalled"]
  deep = _chunk(flat, [[1, 1], [1, 1]])
  out = prediction.columns(deep, 2, _cfg("sgd"), LAYERS, {"learning_rate": np.full(2, 0.1)},
                           hidden_layers=HIDDEN, depth_limit=np.array([2.0, 6.0]))
  assert list(out["predicted_regime"]) == ["stalled", "trained"]


def test_warmup_and_no_layer_probes_in_a_sweep(tmp_path):
  """A warmup from 0 makes the step-0 learning rate 0 (no sharpness is too sharp: ratio
  0, threshold inf); train.layer_probes off leaves the depth gain NaN (never 1) and,
  with diagnostics on, still runs (the per-layer arrays are empty); the step-0 sharpness
  is recorded with its iterations and convergence."""
  cfg = tiny_config({"optimizer.learning_rate": [0.05]},
                    optimizer=dict(name="sgd", schedule="linear_warmup", warmup_steps=10.0),
                    train=dict(layer_probes=False), diagnostics=dict(every=10))
  run_sweep(cfg, str(tmp_path), progress=False)
  row = results.load(str(tmp_path)).iloc[0]
  assert row["initial_lr"] == 0.0 and row["sharpness_ratio"] == 0.0
  assert np.isinf(row["sharpness_threshold"]) and np.isnan(row["depth_gain"])
  assert row["initial_sharpness"] > 0  # two passes when the first lands on a negative one
  assert 1 <= row["initial_sharpness_iters"] <= 2 * 100
  assert bool(row["initial_sharpness_converged"])
  traj = results.load_trajectory(str(tmp_path), int(row["run_id"]))
  assert list(traj["sharpness_step"]) == [0, 10]
  assert traj["sharpness_converged"].dtype == bool


def test_report_section_counts_agreement_and_the_confusion_table():
  """Exact matches 3 of 5 (60%); stable-vs-unstable matches 4 of 5 (80%): only the run
  predicted trained that exploded is on the wrong side. Per optimizer: sgd 2 of 3 exact,
  3 of 3 on the right side; adam 1 of 2 and 1 of 2. Labels in REGIME_ORDER."""
  df = pd.DataFrame({"predicted_regime": ["trained", "exploding", "stalled", "exploding",
                                          "trained"],
                     "regime": ["trained", "diverged", "stalled", "exploding", "exploding"],
                     "optimizer.name": ["sgd", "sgd", "sgd", "adam", "adam"]})
  text = report_section(df)
  assert "matched the observed one in 60% of 5 runs" in text
  assert "stable-vs-unstable (exploding or diverged) matched in 80%." in text
  rows = [ln for ln in text.splitlines() if ln.startswith("|")]
  assert rows[0] == "| predicted \\ observed | trained | stalled | exploding | diverged |"
  assert rows[2:6] == ["| trained | 1 | 0 | 1 | 0 |", "| stalled | 0 | 1 | 0 | 0 |",
                       "| exploding | 0 | 0 | 1 | 1 |", "| diverged | 0 | 0 | 0 | 0 |"]
  assert "| adam | 2 | 50% | 50% |" in rows and "| sgd | 3 | 67% | 100% |" in rows
  assert text.count("Confusion, ") == 2
  assert report_section(df.drop(columns="predicted_regime")) == ""


@pytest.mark.parametrize("every, initial, loss, want", [
  (0, "auto", "mse", True),             # the catapult window reads it
  (0, "auto", "cross_entropy", False),  # no window: not worth its cost
  (0, "auto", "auto", False),           # 'auto' loss resolves to the task's (cross-entropy)
  (0, "on", "cross_entropy", True),
  (0, "off", "mse", False),
  (10, "on", "mse", False),             # diagnostics.every measures step 0 already
])
def test_when_the_step_zero_sharpness_is_measured(every, initial, loss, want):
  from gradlab.data import CLASSIFICATION
  from gradlab.step import measures_initial_sharpness

  cfg = tiny_config(diagnostics=dict(every=every, initial=initial), train=dict(loss=loss))
  assert measures_initial_sharpness(cfg, CLASSIFICATION) is want


def test_unknown_initial_mode_is_refused():
  from gradlab.registry import ConfigError
  from gradlab.sweep.grid import make_plan

  with pytest.raises(ConfigError, match="diagnostics.initial"):
    make_plan(tiny_config(diagnostics=dict(initial="sometimes")))
