"""Optimizers and remedies inside the sweep: traced numbers, guards, evaluation params."""

from __future__ import annotations

import numpy as np
from conftest import tiny_config

from gradlab import results
from gradlab.report import optimizers
from gradlab.sweep import make_plan, run_sweep


def test_numeric_hparams_of_optimizer_and_remedies_share_one_compile(tmp_path):
  axes = {"optimizer.learning_rate": [1e-3, 1e-2], "optimizer.b1": [0.8, 0.95],
          "optimizer.clip": [0.5, 2.0], "optimizer.agc_clip": [0.01, 0.1],
          "optimizer.warmup_steps": [0.0, 10.0], "init.sigma_w": [0.5, 2.0]}
  cfg = tiny_config(axes, optimizer=dict(name="adamw", remedies="agc",
                                         schedule="warmup_cosine"))
  assert len(make_plan(cfg).groups) == 1
  stats = run_sweep(cfg, str(tmp_path), progress=False)
  assert (stats.n_points, stats.n_compiles) == (64, 1)
  df = results.load(str(tmp_path))
  # the traced numbers reach the runs: different b1 gives different losses
  a = df[(df["optimizer.b1"] == 0.8)].sort_values("run_id")["final_loss"].to_numpy()
  b = df[(df["optimizer.b1"] == 0.95)].sort_values("run_id")["final_loss"].to_numpy()
  assert not np.allclose(a, b)


def test_skip_nonfinite_counts_skipped_steps_in_the_sweep(tmp_path):
  # lr 1e38: the first update is finite but so large that the next loss overflows. The
  # guard skips every later step (non-finite loss) and counts them; it cannot undo the
  # update that caused them, so the run is still diverged: honest, not hidden.
  axes = {"optimizer.remedies": ["", "skip_nonfinite"], "optimizer.learning_rate": [1e38]}
  cfg = tiny_config(axes, optimizer=dict(name="sgd"))
  run_sweep(cfg, str(tmp_path), progress=False)
  df = results.load(str(tmp_path)).set_index("optimizer.remedies")
  assert df.loc["", "skipped_steps"] == 0
  steps = cfg.train.steps
  first_bad = int(df.loc["skip_nonfinite", "first_nonfinite_step"])
  # every skipped step came after the first non-finite one (a minibatch whose loss still
  # fits in float32 is not skipped, so not necessarily all of them)
  assert 1 <= df.loc["skip_nonfinite", "skipped_steps"] <= steps - first_bad
  assert set(df["regime"]) == {"diverged"}


def test_a_guarded_run_that_recovers_is_not_diverged():
  from gradlab.regimes import classify

  summary = dict(first_nonfinite_step=np.array([7, 7, 7]), initial_grad_norm=1.0,
                 max_grad_norm=2.0, initial_loss=2.3, final_loss=np.array([1.0, 1.0, np.nan]),
                 skipped_steps=np.array([0, 1, 1]))
  assert list(classify(summary, 100.0, 0.05)) == ["diverged", "trained", "diverged"]


def test_gadam_reports_the_iterate_average(tmp_path):
  cfg = tiny_config({"optimizer.name": ["gadam", "adamw"]},
                    optimizer=dict(learning_rate=1e-2, average_start=10))
  run_sweep(cfg, str(tmp_path), progress=False)
  df = results.load(str(tmp_path)).set_index("optimizer.name")
  assert df.loc["gadam", "eval_params"] == "iterate_average"
  assert df.loc["adamw", "eval_params"] == "last"


def test_stable_lr_is_the_largest_stable_cell():
  import pandas as pd

  rows = []
  for opt, regimes in {"sgd": ["trained", "trained", "exploding", "diverged"],
                       "adam": ["stalled", "exploding", "trained", "diverged"]}.items():
    for lr, regime in zip([1e-3, 1e-2, 1e-1, 1.0], regimes, strict=True):
      rows.append({"optimizer.name": opt, "optimizer.learning_rate": lr, "init.sigma_w": 1.0,
                   "regime": regime, "test_accuracy": 0.5})
  table = optimizers.stable_lr(pd.DataFrame(rows), ["init.sigma_w", "optimizer.learning_rate",
                                                    "optimizer.name"]).set_index("variant")
  assert table.loc["sgd", "largest_stable_lr"] == 1e-2
  assert table.loc["adam", "largest_stable_lr"] == 1e-1
