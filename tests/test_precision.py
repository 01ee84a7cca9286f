"""train.precision and the loss_scale remedy: float16's underflow, and what loss scaling
keeps of it (constructed cases), dynamic scale rules, and a sweep over precisions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import run_cli, tiny_config

from gradlab import results, train
from gradlab import step as step_lib
from gradlab.optim import guards
from gradlab.registry import ConfigError
from gradlab.sweep import grid, run_sweep
from gradlab.train import hparams_from_config, make_data_arrays


def _kernel_grad_norm(teacher, precision: str, remedies: str = "") -> float:
  """The gradient norm of one step of a bias-free linear model whose standardized inputs
  are scaled by 5e-8 (most entries still float16 subnormals, a few ulps of 6e-8): the
  float32 gradient's entries are then around 1e-8, below float16's smallest positive
  value."""
  cfg = tiny_config(model=dict(name="linear", use_bias=False),
                    optimizer=dict(name="sgd", remedies=remedies),
                    train=dict(precision=precision))
  static = step_lib.make_static(cfg, teacher.num_classes, None, teacher.task)
  hp = {k: jnp.float32(v) for k, v in hparams_from_config(cfg).items()}
  data = make_data_arrays(teacher, cfg.train.eval_size)
  data = data._replace(x_train=data.x_train * 5e-8, x_eval=data.x_eval * 5e-8)
  lane = step_lib.make_lane(static, hp, jax.random.PRNGKey(0), data)
  carry, _ = train.start(static, lane)
  _, record = jax.jit(lambda c: step_lib.train_step(static, lane, c, jnp.int32(0),
                                                    probe=True))(carry)
  return float(record["grad_norm"])


def test_float16_underflows_a_gradient_that_loss_scaling_keeps(teacher):
  exact = _kernel_grad_norm(teacher, "float32")
  assert 0 < exact < 1e-6
  assert _kernel_grad_norm(teacher, "float16") == 0.0  # every entry flushed to zero
  scaled = _kernel_grad_norm(teacher, "float16", "loss_scale")  # x 2^15 before backward
  # within the float16 rounding of the inputs themselves (a few ulps each): 10%
  np.testing.assert_allclose(scaled, exact, rtol=0.1)
  np.testing.assert_allclose(_kernel_grad_norm(teacher, "bfloat16"), exact, rtol=0.05)


def test_loss_scale_halves_and_skips_on_nonfinite_and_doubles_after_a_period():
  tx = guards.loss_scale(optax.sgd(1.0), initial=8.0, period=2)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  good = {"w": jnp.asarray([0.5, -0.5])}
  bad = {"w": jnp.asarray([jnp.inf, 0.0])}
  updates, state = tx.update(bad, state, params)
  assert float(state.scale) == 4.0 and int(state.skips) == 1
  np.testing.assert_array_equal(updates["w"], [0.0, 0.0])
  updates, state = tx.update(good, state, params)
  assert float(state.scale) == 4.0 and int(state.good_steps) == 1
  np.testing.assert_array_equal(updates["w"], [-0.5, 0.5])
  _, state = tx.update(good, state, params)
  assert float(state.scale) == 8.0 and int(state.good_steps) == 0
  assert guards.loss_scale_of(state) is state.scale
  assert guards.loss_scale_of(optax.sgd(1.0).init(params)) is None


def test_unknown_precision_is_one_clear_error():
  with pytest.raises(ConfigError, match="train.precision"):
    grid.make_plan(tiny_config(train=dict(precision="float8")))


def test_a_precision_sweep_records_the_loss_scale(tmp_path):
  """precision is static (one group each); the loss_scale runs record their final scale,
  the others NaN; at a gentle learning rate all three precisions train alike."""
  cfg = tiny_config({"train.precision": ["float32", "bfloat16", "float16"]},
                    optimizer=dict(name="adam", learning_rate=0.01, remedies="loss_scale"))
  run_sweep(cfg, str(tmp_path), progress=False)
  rows = results.load(str(tmp_path)).sort_values("run_id")
  assert list(rows["train.precision"]) == ["float32", "bfloat16", "float16"]
  assert (rows["final_loss_scale"] == 32768.0).all()  # 20 steps < the 2000-step period
  np.testing.assert_allclose(rows["final_loss"], rows["final_loss"].iloc[0], rtol=0.02)


def test_mixed_precision_config_runs_from_the_cli(tmp_path):
  """configs/mixed_precision.py at smoke size, float16 only (the three precisions run
  in-process in test_a_precision_sweep_records_the_loss_scale): {none, loss_scale}, one
  group each, the loss scale recorded where the remedy is on."""
  wd = str(tmp_path / "mp")
  out = run_cli(
    "experiments.sweep", "--config=configs/mixed_precision.py",
    f"--workdir={wd}", "--quiet", "--config.model.depth=2", "--config.model.width=8",
    "--config.train.steps=20", "--axis=init.sigma_w=1", "--axis=optimizer.learning_rate=0.01",
    "--axis=train.precision=float16")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "2 runs" in out.stdout and "2 groups" in out.stdout
  rows = results.load(wd)
  scaled = rows["optimizer.remedies"] == "loss_scale"
  assert scaled.sum() == 1
  assert rows.loc[scaled, "final_loss_scale"].eq(32768.0).all()
  assert rows.loc[~scaled, "final_loss_scale"].isna().all()
  assert set(rows["regime"]) == {"trained"}
