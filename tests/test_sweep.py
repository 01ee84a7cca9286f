"""Grid expansion, grouping and the one-compile-per-group rule."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from gradlab import results
from gradlab.registry import ConfigError
from gradlab.sweep import make_plan, run_sweep


def test_static_axes_make_groups_traced_axes_make_lanes():
  cfg = tiny_config({"init.sigma_w": [0.5, 1.0, 2.0], "optimizer.learning_rate": [1e-3, 1e-2],
                     "optimizer.name": ["sgd", "adam"], "model.depth": [1, 2]})
  plan = make_plan(cfg)
  assert plan.n_points == 24
  assert len(plan.groups) == 4  # optimizer x depth
  for g in plan.groups:
    assert len(g) == 6
    assert sorted(set(g.hparams["sigma_w"])) == [0.5, 1.0, 2.0]
  assert sorted(i for g in plan.groups for i in g.run_ids) == list(range(24))


def test_clip_zero_and_positive_are_different_groups():
  plan = make_plan(tiny_config({"optimizer.clip": [0.0, 1.0, 5.0]}))
  assert sorted(len(g) for g in plan.groups) == [1, 2]


def test_compiles_equal_groups_and_padding_never_reaches_results(tmp_path):
  cfg = tiny_config({"init.sigma_w": [0.5, 1.0, 2.0], "optimizer.learning_rate": [1e-2, 1e-1],
                     "optimizer.name": ["sgd", "adam"]}, sweep=dict(chunk_size=4))
  stats = run_sweep(cfg, str(tmp_path), progress=False)
  assert stats.n_groups == 2
  assert stats.n_compiles == stats.n_groups
  df = results.load(str(tmp_path))
  assert len(df) == 12  # 6 points per group in chunks of 4: the second chunk is padded
  assert sorted(df["run_id"]) == list(range(12))
  got = df.groupby(["optimizer.name", "init.sigma_w", "optimizer.learning_rate"]).size()
  assert (got == 1).all()
  assert set(df["regime"]) <= {"trained", "catapult", "stalled", "exploding", "diverged"}
  for col in ("seed", "first_nonfinite_step", "explosion_step", "initial_loss", "final_loss",
              "test_accuracy", "max_grad_norm", "final_grad_norm"):
    assert col in df.columns
  assert np.all((df["test_accuracy"] >= 0) & (df["test_accuracy"] <= 1))


def test_sweep_row_equals_single_run(tmp_path, teacher):
  """A sweep's stored numbers are the numbers of the same point trained alone."""
  from gradlab.config import with_overrides
  from gradlab.train import train_one

  cfg = tiny_config({"init.sigma_w": [0.7, 1.9], "train.seed": [0, 3]})
  run_sweep(cfg, str(tmp_path), progress=False)
  df = results.load(str(tmp_path))
  row = df[(df["init.sigma_w"] == 1.9) & (df["seed"] == 3)].iloc[0]
  alone = train_one(with_overrides(cfg, {"init.sigma_w": 1.9, "train.seed": 3}), teacher)
  np.testing.assert_allclose(row["final_loss"], float(alone.final_loss), rtol=2e-5)
  traj = results.load_trajectory(str(tmp_path), int(row["run_id"]))
  np.testing.assert_allclose(traj["loss"], np.asarray(alone.loss), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("axes, match", [
  ({"init.sigma_w": []}, "empty"),
  ({"init.sigmaw": [1.0]}, "does not have.*init.sigma_w"),
  ({"optimizer.name": ["sgd", "adamm"]}, "unknown optimizer 'adamm'.*known:.*adam"),
  ({"model.activation": ["tanhh"]}, "unknown activation.*known:.*tanh"),
  ({"optimizer.learning_rate": [0.1, -1.0]}, "learning_rate.*positive"),
  ({"model.depth": [0]}, "depth.*positive"),
])
def test_bad_axes_fail_before_compile(axes, match):
  with pytest.raises(ConfigError, match=match):
    make_plan(tiny_config(axes))
