"""experiments.train, gradlab.diagnose and gradlab.viz.dashboard: one run's
diagnostics.json holds the numbers the theory and the run say it should, the dashboard
draws the right thresholds, and bad input is one clean line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import run_cli, tiny_config

from gradlab import diagnose, theory
from gradlab.diagnostics import run_summary
from gradlab.viz import dashboard

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEPTH, SIGMA_W, LR, STEPS, LOG_EVERY = 4, 1.3, 0.05, 20, 5
TINY = ["--config=configs/smoke.py", f"--config.model.depth={DEPTH}",
        "--config.model.width=64", "--config.model.activation=tanh",
        f"--config.train.steps={STEPS}", f"--config.train.log_every={LOG_EVERY}",
        "--config.optimizer.name=sgd", f"--config.optimizer.learning_rate={LR}",
        f"--config.init.sigma_w={SIGMA_W}", "--config.init.sigma_b=0.0"]


def _train(*args):
  return run_cli("experiments.train", *args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  wd = tmp_path_factory.mktemp("train")
  out = _train(*TINY, f"--workdir={wd}")
  assert out.returncode == 0, out.stderr[-3000:]
  with open(wd / "diagnostics.json") as f:
    return wd, json.load(f), out.stdout


def test_train_writes_the_documented_diagnostics(tiny_run):
  wd, diag, stdout = tiny_run
  assert set(diag) == {"config", "notes", "point", "summary", "curves", "sharpness", "onset",
                       "init", "grad_histograms"}
  assert "sweep axes ignored" in stdout and any("sweep axes ignored" in n for n in diag["notes"])
  assert diag["config"]["sweep"]["axes"] == {}  # the single point that ran
  assert diag["config"]["init"]["sigma_w"] == SIGMA_W
  init = diag["init"]
  assert len(init["chi_1_measured"]) == DEPTH - 1
  assert len(init["q"]) == len(init["q_theory"]) == len(init["c_theory"]) == DEPTH
  assert len(init["chi_1_theory_by_layer"]) == DEPTH - 1
  assert init["chi_1_theory"] == pytest.approx(float(theory.chi_1("tanh", SIGMA_W**2, 0.0)),
                                               rel=1e-12)
  assert init["mean_field"]["q_star"] == pytest.approx(
    float(theory.q_star("tanh", SIGMA_W**2, 0.0)), rel=1e-9)
  # measured q^0 = sigma_w^2 * mean(x^2) at init: the first layer is linear in x
  assert init["q"][0] == pytest.approx(SIGMA_W**2 * init["input_q"], rel=0.1)
  # the init-time params are re-created exactly as run() makes them
  assert init["initial_loss_recomputed"] == pytest.approx(diag["summary"]["initial_loss"],
                                                          rel=1e-6)
  assert len(init["grad_norm_by_layer"]) == DEPTH + 1  # hidden layers and the readout
  assert len(init["jacobian_singular_values"]["readout"]) == 10  # min(K, F) = 10 classes
  n_logs = STEPS // LOG_EVERY
  c = diag["curves"]
  assert c["step"] == list(range(0, STEPS, LOG_EVERY))
  assert np.shape(c["grad_norm_by_layer"]) == (n_logs, DEPTH + 1)
  assert np.shape(c["update_ratio_by_layer"]) == (n_logs, DEPTH + 1)
  sh = diag["sharpness"]
  assert sh["step"] == list(range(0, STEPS, LOG_EVERY))  # diagnostics.every forced on
  assert len(sh["sharpness"]) == n_logs and all(v > 0 for v in sh["sharpness"])
  assert sh["threshold"] == pytest.approx(2.0 / LR) and sh["compared"] == "sharpness"
  assert diag["onset"]["first_nonfinite_step"] is None
  assert diag["summary"]["regime"] in ("trained", "stalled", "exploding", "diverged")
  for name in ("dashboard.png", "per_layer.png", "sharpness.png"):
    with open(os.path.join(wd, name), "rb") as f:
      assert f.read(8) == PNG_MAGIC


@pytest.mark.parametrize("flag, message", [
  ("--config.model.widht=3", "unknown config key 'model.widht' (did you mean 'model.width'?)"),
  ("--config.optimizer.name=adamm", "unknown optimizer 'adamm'"),
  ("--config.diagnostics.every=7", "'diagnostics.every' (7) must be 0 or a multiple"),
])
def test_bad_flag_is_one_clean_line(tmp_path, flag, message):
  wd = tmp_path / "wd"
  out = run_cli("experiments.train", *TINY, flag, f"--workdir={wd}")
  assert out.returncode == 2, out.stderr
  assert out.stderr.strip().startswith("error: ") and message in out.stderr
  assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
  assert not wd.exists()


@pytest.mark.parametrize("name, lr, beta, want, compared", [
  ("sgd", 0.05, 0.9, 2 / 0.05, "sharpness"),
  ("momentum", 0.1, 0.9, (2 + 2 * 0.9) / 0.1, "sharpness"),
  ("adam", 1e-3, 0.9, (2 + 2 * 0.9) / (0.1 * 1e-3), "preconditioned_sharpness"),
])
def test_sharpness_threshold_per_optimizer(name, lr, beta, want, compared):
  cfg = tiny_config(optimizer=dict(name=name, learning_rate=lr, momentum=beta, b1=beta))
  ref = diagnose.sharpness_reference(cfg)
  assert ref["threshold"] == pytest.approx(want) and ref["compared"] == compared
  assert np.isnan(diagnose.sharpness_reference(
    tiny_config(optimizer=dict(name="lion")))["threshold"])


def test_dashboard_draws_the_threshold_at_two_over_lr(tiny_run):
  _, diag, _ = tiny_run
  import matplotlib.pyplot as plt

  fig = dashboard.dashboard_figure(diag)
  (ax,) = [a for a in fig.axes if a.get_title().startswith("sharpness")]
  threshold = [ln for ln in ax.get_lines() if ln.get_label().startswith("2/lr")]
  plt.close(fig)
  assert len(threshold) == 1
  np.testing.assert_allclose(threshold[0].get_ydata(), [2.0 / LR] * 2)


def test_per_layer_theory_line_is_chi_1_to_the_half_depth_to_go():
  chi, depth = 0.8, 5
  diag = {"init": {"grad_sq": [chi ** (depth - 1 - i) for i in range(depth)],
                   "grad_norm_by_layer": [1.0] * (depth + 1), "chi_1_theory": chi,
                   "chi_1_theory_by_layer": [chi] * (depth - 1), "chi_1_measured_mean": chi}}
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots()
  dashboard.draw_per_layer(ax, diag)
  lines = {ln.get_label(): ln for ln in ax.get_lines()}
  theory_line = next(v for k, v in lines.items() if k.startswith("chi_1^"))
  want = chi ** ((depth - 1 - np.arange(depth)) / 2)
  np.testing.assert_allclose(theory_line.get_ydata(), want, rtol=1e-12)
  measured = lines["RMS dL/dh^l (measured)"].get_ydata()
  np.testing.assert_allclose(measured, want, rtol=1e-12)  # exact mean-field decay
  plt.close(fig)


def test_jsonable_turns_non_finite_numbers_into_null():
  out = run_summary.jsonable({"a": np.array([1.0, np.nan, np.inf]), "b": np.int32(3),
                            "c": np.float32(0.5), "d": np.array(2.0), "e": (True, "x")})
  assert out == {"a": [1.0, None, None], "b": 3, "c": 0.5, "d": 2.0, "e": [True, "x"]}
  json.dumps(out, allow_nan=False)


def test_no_python_none_or_nan_in_the_dashboards_text(tiny_run):
  """Issue 21: the title printed "explosion onset step None (None)". Every title and
  the suptitle of a run without events say so in words."""
  import matplotlib.pyplot as plt

  _, diag, _ = tiny_run
  quiet = {**diag, "onset": {"explosion_step": None, "explosion_layer": None,
                             "first_nonfinite_step": None, "first_nonfinite_layer": None},
           "summary": {**diag["summary"], "final_loss": None}}
  fig = dashboard.dashboard_figure(quiet)
  texts = [fig._suptitle.get_text(), *(ax.get_title() for ax in fig.axes)]
  plt.close(fig)
  assert "no explosion onset, no non-finite value" in texts[0]
  for text in texts:
    assert "None" not in text and "nan" not in text.lower(), text
  assert dashboard.onset_text({"explosion_step": 40, "explosion_layer": "dense_3",
                               "first_nonfinite_step": -1}) == (
    "explosion onset at step 40 (dense_3), no non-finite value")


def test_layer_axes_tick_whole_layers(tiny_run):
  """Hidden layers are whole numbers: the layer axes of the dashboard used to tick at
  0.25, 0.5, ... for a 3-layer network."""
  import matplotlib.pyplot as plt

  _, diag, _ = tiny_run
  fig = dashboard.dashboard_figure(diag)
  layer_axes = [ax for ax in fig.axes if ax.get_xlabel() == "hidden layer l"]
  ticks = [t for ax in layer_axes for t in ax.get_xticks()]
  plt.close(fig)
  assert len(layer_axes) == 2 and ticks
  assert all(float(t).is_integer() for t in ticks), ticks
