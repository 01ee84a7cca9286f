"""run(): lane equivalence under vmap, NaN isolation, init scaling, optimizer steps; the
module-level step (gradlab.step) called alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_config

from gradlab import step as step_lib
from gradlab import train
from gradlab.data import sample_batch
from gradlab.losses import cross_entropy
from gradlab.models import MODELS, scale_by, scale_params
from gradlab.optim import build_optimizer
from gradlab.train import build_run, hparams_from_config, make_data_arrays


def _lanes(cfg, teacher, overrides):
  """hparams arrays for len(overrides) lanes: dicts of short-name -> value."""
  base = hparams_from_config(cfg)
  hp = {k: np.array([o.get(k, v) for o in overrides], np.float32) for k, v in base.items()}
  keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(hp["seed"], jnp.int32))
  return hp, keys


def _vmapped(cfg, teacher):
  run = build_run(cfg, teacher.num_classes).run
  data = make_data_arrays(teacher, cfg.train.eval_size)
  return run, jax.jit(jax.vmap(run, in_axes=(0, 0, None))), data


def test_lane_equals_single_run(teacher):
  cfg = tiny_config(optimizer=dict(name="adam"))
  points = [dict(sigma_w=0.5, learning_rate=1e-3, seed=0),
            dict(sigma_w=1.5, learning_rate=3e-2, seed=1),
            dict(sigma_w=3.0, learning_rate=1e-1, seed=2)]
  run, vrun, data = _vmapped(cfg, teacher)
  hp, keys = _lanes(cfg, teacher, points)
  lanes = vrun({k: jnp.asarray(v) for k, v in hp.items()}, keys, data)
  single = jax.jit(run)
  for i in range(len(points)):
    alone = single({k: jnp.asarray(v[i]) for k, v in hp.items()}, keys[i], data)
    np.testing.assert_allclose(lanes.loss[i], alone.loss, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(lanes.grad_norm_by_layer[i], alone.grad_norm_by_layer,
                               rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(lanes.final_loss[i], alone.final_loss, rtol=2e-5)


def test_absurd_lr_lane_diverges_alone(teacher):
  cfg = tiny_config(optimizer=dict(name="sgd"), train=dict(steps=30, log_every=1))
  run, vrun, data = _vmapped(cfg, teacher)
  sane = [dict(learning_rate=0.1, seed=0), dict(learning_rate=0.05, seed=1),
          dict(learning_rate=0.02, seed=2)]
  absurd = dict(learning_rate=1e38, seed=1)  # float32 logits overflow
  hp_a, keys_a = _lanes(cfg, teacher, [sane[0], absurd, sane[2]])
  hp_b, keys_b = _lanes(cfg, teacher, sane)
  with_nan = jax.device_get(vrun({k: jnp.asarray(v) for k, v in hp_a.items()}, keys_a, data))
  without = jax.device_get(vrun({k: jnp.asarray(v) for k, v in hp_b.items()}, keys_b, data))
  first_bad = int(with_nan.tracker.first_nonfinite_step[1])
  assert first_bad > 0, "the absurd lane should go non-finite after its first update"
  assert np.all(np.isfinite(with_nan.loss[1][:first_bad]))
  assert not np.isfinite(with_nan.loss[1][first_bad])
  assert not with_nan.finite[1][first_bad]
  for lane in (0, 2):  # neighbours are bit-identical to the chunk without the NaN lane
    for field in ("loss", "grad_norm", "grad_norm_by_layer", "param_norm", "update_norm",
                  "final_loss", "test_accuracy"):
      np.testing.assert_array_equal(getattr(with_nan, field)[lane],
                                    getattr(without, field)[lane])
    assert int(with_nan.tracker.first_nonfinite_step[lane]) == -1


def test_absurd_lr_is_labelled_diverged_in_a_sweep(tmp_path):
  from gradlab import results
  from gradlab.sweep import run_sweep

  cfg = tiny_config({"optimizer.learning_rate": [0.05, 1e38]}, optimizer=dict(name="sgd"))
  run_sweep(cfg, str(tmp_path), progress=False)
  df = results.load(str(tmp_path)).set_index("optimizer.learning_rate")
  assert df.loc[1e38, "regime"] == "diverged"
  assert df.loc[1e38, "first_nonfinite_step"] >= 1
  assert df.loc[0.05, "regime"] != "diverged"
  assert np.isnan(df.loc[0.05, "first_nonfinite_step"])


@pytest.mark.parametrize("sigma_w", [0.5, 2.0])
def test_kernel_std_is_sigma_w_over_sqrt_fan_in(sigma_w):
  cfg = tiny_config()
  cfg.model.depth, cfg.model.width = 3, 256
  model, names, *_ = MODELS.get("mlp")(cfg.model, "lecun", 10)
  unit = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 128)))["params"]
  params = scale_params(unit, scale_by(jnp.float32(sigma_w), jnp.float32(0.3)))
  for name in names:
    kernel = np.asarray(params[name]["kernel"])
    fan_in, n = kernel.shape[0], kernel.size
    expected = sigma_w / np.sqrt(fan_in)
    # the sample std of n Gaussians has relative standard error 1/sqrt(2n); allow 5 of them
    assert abs(kernel.std() / expected - 1) < 5 / np.sqrt(2 * n), name
    assert abs(kernel.mean()) < 5 * expected / np.sqrt(n), name
    bias = np.asarray(params[name]["bias"])
    assert abs(bias.std() / 0.3 - 1) < 5 / np.sqrt(2 * bias.size), name


def _one_step(name, hp, params, grads):
  tx = build_optimizer(name, clip_enabled=False)({k: jnp.float32(v) for k, v in hp.items()})
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  p1 = optax.apply_updates(params, updates)
  updates, state = tx.update(grads, state, p1)
  return p1, optax.apply_updates(p1, updates)


def test_adam_two_steps_match_hand_computation():
  lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
  p0, g = np.array([1.0, -2.0]), np.array([0.5, -3.0])
  p1, p2 = _one_step("adam", dict(learning_rate=lr, b1=b1, b2=b2, eps=eps),
                     {"w": jnp.asarray(p0, jnp.float32)}, {"w": jnp.asarray(g, jnp.float32)})
  m1, v1 = (1 - b1) * g, (1 - b2) * g**2
  want1 = p0 - lr * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + eps)
  m2, v2 = b1 * m1 + (1 - b1) * g, b2 * v1 + (1 - b2) * g**2
  want2 = want1 - lr * (m2 / (1 - b1**2)) / (np.sqrt(v2 / (1 - b2**2)) + eps)
  np.testing.assert_allclose(p1["w"], want1, rtol=1e-6)
  np.testing.assert_allclose(p2["w"], want2, rtol=1e-6)


def test_momentum_two_steps_match_hand_computation():
  lr, mu = 0.1, 0.9
  p0, g = np.array([1.0, -2.0]), np.array([0.5, -3.0])
  p1, p2 = _one_step("momentum", dict(learning_rate=lr, momentum=mu),
                     {"w": jnp.asarray(p0, jnp.float32)}, {"w": jnp.asarray(g, jnp.float32)})
  np.testing.assert_allclose(p1["w"], p0 - lr * g, rtol=1e-6)
  np.testing.assert_allclose(p2["w"], p0 - lr * g - lr * (mu * g + g), rtol=1e-6)


def test_hparams_are_traced_not_constants(teacher):
  """Two learning rates through one jitted run: one trace, different losses."""
  cfg = tiny_config(optimizer=dict(name="adam"))
  run = build_run(cfg, teacher.num_classes).run
  traces = []

  def counted(hp, key, data):
    traces.append(1)
    return run(hp, key, data)

  f = jax.jit(counted)
  data = make_data_arrays(teacher, cfg.train.eval_size)
  hp = {k: jnp.float32(v) for k, v in hparams_from_config(cfg).items()}
  a = f(hp, jax.random.PRNGKey(0), data)
  b = f({**hp, "learning_rate": jnp.float32(0.05), "sigma_w": jnp.float32(2.0)},
        jax.random.PRNGKey(0), data)
  assert len(traces) == 1
  assert float(a.final_loss) != float(b.final_loss)


def test_one_sgd_step_alone_is_params_minus_lr_times_the_hand_gradient(teacher):
  """gradlab.step.train_step called alone on a linear model: the minibatch is the one
  fold_in(split(key, 3)[1], step) samples, the new params are p - lr * grad of the
  cross-entropy on it (jax.grad here), and the probed step takes the same step while
  recording the loss and gradient norm before it."""
  lr = 0.3
  cfg = tiny_config(model=dict(name="linear"), optimizer=dict(name="sgd", learning_rate=lr))
  static = step_lib.make_static(cfg, teacher.num_classes, None, teacher.task)
  hp = {k: jnp.float32(v) for k, v in hparams_from_config(cfg).items()}
  key = jax.random.PRNGKey(3)
  lane = step_lib.make_lane(static, hp, key, make_data_arrays(teacher, cfg.train.eval_size))
  carry, _ = train.start(static, lane)
  step = jnp.int32(7)

  xb, yb = step_lib.batch_at(static, lane, step)
  want_x, want_y = sample_batch(jax.random.fold_in(jax.random.split(key, 3)[1], 7),
                                lane.data.x_train, lane.data.y_train, cfg.data.batch_size)
  np.testing.assert_array_equal(xb, want_x)
  np.testing.assert_array_equal(yb, want_y)
  loss_fn = lambda p: cross_entropy(static.spec.module.apply({"params": p}, xb), yb)
  loss, grads = jax.value_and_grad(loss_fn)(carry.params)
  want = jax.tree_util.tree_map(lambda p, g: p - lr * g, carry.params, grads)

  plain, none = step_lib.train_step(static, lane, carry, step, probe=False)
  probed, record = step_lib.train_step(static, lane, carry, step, probe=True)
  assert none is None
  for got in (plain.params, probed.params):
    for name in ("kernel", "bias"):
      np.testing.assert_allclose(got["readout"][name], want["readout"][name], rtol=1e-6,
                                 atol=1e-7)
  jax.tree_util.tree_map(np.testing.assert_array_equal, plain.params, probed.params)
  np.testing.assert_allclose(record["loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(record["grad_norm"], optax.global_norm(grads), rtol=1e-6)
  assert bool(record["finite"])
  np.testing.assert_allclose(plain.tracker.final_grad_norm, optax.global_norm(grads), rtol=1e-6)
