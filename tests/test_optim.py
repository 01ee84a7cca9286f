"""Optimizers, remedies, schedules, guards and the chain builder (gradlab.optim)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib

from gradlab.optim import (
  HPARAM_DEFAULTS,
  OPTIMIZER_INFO,
  OPTIMIZERS,
  REMEDIES,
  build_optimizer,
  chain_hparam_keys,
  eval_params,
  paper_hparams,
  remedies,
  schedules,
  skip_count,
)
from gradlab.optim.guards import loss_spike
from gradlab.registry import ConfigError


def f32(tree):
  return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), tree)


def mlp_params():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  return {"dense_0": {"kernel": jax.random.normal(k1, (4, 3)), "bias": jnp.zeros(3)},
          "readout": {"kernel": jax.random.normal(k2, (3, 2)), "bias": jnp.zeros(2)}}


# --------------------------------------------------------------------------- numpy refs
A, X0, LR = 2.0, 1.5, 0.1  # f(x) = 0.5 * A * x^2, x_0 = X0


def np_adam(b1=0.8, b2=0.95, eps=1e-3, steps=3, nesterov=False):
  x, m, v = X0, 0.0, 0.0
  out = []
  for t in range(1, steps + 1):
    g = A * x
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    if nesterov:  # optax's Nadam
      m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
    else:
      m_hat = m / (1 - b1 ** t)
    x = x - LR * m_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)
    out.append(x)
  return out


def np_heavy_ball(momentum=0.7, steps=3):
  x, m, out = X0, 0.0, []
  for _ in range(steps):
    m = momentum * m + A * x
    x = x - LR * m
    out.append(x)
  return out


def np_rmsprop(decay=0.8, eps=1e-3, steps=3):
  x, nu, out = X0, 0.0, []
  for _ in range(steps):
    g = A * x
    nu = decay * nu + (1 - decay) * g * g
    x = x - LR * g / np.sqrt(nu + eps)
    out.append(x)
  return out


def run_quadratic(name, hp, steps=3):
  tx = build_optimizer(name)(f32(hp))
  x = jnp.float32(X0)
  state = tx.init(x)
  out = []
  for _ in range(steps):
    updates, state = tx.update(A * x, state, x)
    x = optax.apply_updates(x, updates)
    out.append(float(x))
  return out


@pytest.mark.parametrize("name,hp,expected", [
  ("adam", dict(learning_rate=LR, b1=0.8, b2=0.95, eps=1e-3), np_adam()),
  ("nadam", dict(learning_rate=LR, b1=0.8, b2=0.95, eps=1e-3), np_adam(nesterov=True)),
  ("momentum", dict(learning_rate=LR, momentum=0.7), np_heavy_ball()),
  ("rmsprop", dict(learning_rate=LR, decay=0.8, eps=1e-3), np_rmsprop()),
])
def test_three_steps_match_numpy(name, hp, expected):
  np.testing.assert_allclose(run_quadratic(name, hp), expected, rtol=2e-6)


# --------------------------------------------------------------------------- remedies
def apply_stage(stage, grads, params=None):
  return stage.update(grads, stage.init(params if params is not None else grads), params)[0]


@pytest.mark.parametrize("factor", [0.1, 0.5, 0.999, 1.0, 2.0, 50.0])
def test_global_norm_clip_gives_min_of_norm_and_threshold(factor):
  grads = {"a": jnp.array([3.0, -4.0]), "b": {"c": jnp.array([[12.0]])}}  # norm 13
  out = apply_stage(remedies.clip_by_global_norm(jnp.float32(13.0 * factor)), grads)
  np.testing.assert_allclose(float(optax.global_norm(out)), min(13.0, 13.0 * factor),
                             rtol=1e-6)
  np.testing.assert_allclose(out["a"] / out["b"]["c"][0, 0], grads["a"] / 12.0, rtol=1e-6)


def test_agc_clips_each_unit_to_lambda_times_weight_norm():
  # Units are columns (fan_out) of a (fan_in, fan_out) kernel.
  w = jnp.array([[3.0, 0.0], [4.0, 1.0]])  # unit norms 5 and 1
  g = jnp.array([[1.0, 0.0], [0.0, 10.0]])  # unit norms 1 and 10
  out = apply_stage(remedies.adaptive_clip(jnp.float32(0.5)), {"k": g}, {"k": w})["k"]
  # unit 0: 1 <= 0.5 * 5, kept; unit 1: 10 > 0.5 * 1, scaled to norm 0.5.
  np.testing.assert_allclose(out, [[1.0, 0.0], [0.0, 0.5]], rtol=1e-6)
  # eps: a zero weight still allows a gradient of norm lambda * 1e-3.
  out0 = apply_stage(remedies.adaptive_clip(jnp.float32(0.5)), {"b": jnp.array([3.0, 4.0])},
                     {"b": jnp.zeros(2)})["b"]
  np.testing.assert_allclose(out0, np.array([3.0, 4.0]) / 5.0 * 0.5e-3, rtol=1e-5)


def test_value_clip_bounds_every_entry():
  g = {"a": jnp.array([-3.0, -0.2, 0.0, 0.4, 7.0])}
  out = apply_stage(remedies.clip_by_value(jnp.float32(0.5)), g)["a"]
  np.testing.assert_allclose(out, [-0.5, -0.2, 0.0, 0.4, 0.5])


def test_layer_norm_clip_clips_each_layer_on_its_own():
  g = {"l0": {"k": jnp.array([3.0, 4.0])}, "l1": {"k": jnp.array([0.3]), "b": jnp.array([0.4])}}
  out = apply_stage(remedies.clip_by_layer_norm(jnp.float32(1.0)), g)
  assert float(optax.global_norm(out["l0"])) == pytest.approx(1.0, rel=1e-6)
  assert float(optax.global_norm(out["l1"])) == pytest.approx(0.5, rel=1e-6)  # untouched


def test_weight_decay_stage_scales_by_scheduled_lr():
  hp = f32({"learning_rate": 0.5, "warmup_steps": 2.0, "weight_decay": 0.1})
  tx = build_optimizer("sgd", remedies=["weight_decay"], schedule="linear_warmup")(hp)
  p, g = jnp.array([2.0]), jnp.array([1.0])
  state = tx.init(p)
  got = []
  for _ in range(3):
    u, state = tx.update(g, state, p)
    got.append(float(u[0]))
  lrs = [0.0, 0.25, 0.5]  # 0.5 * min(1, t / 2)
  np.testing.assert_allclose(got, [-lr * (1.0 + 0.1 * 2.0) for lr in lrs], rtol=1e-6)


# --------------------------------------------------------------------------- schedules
def test_schedules_closed_forms():
  steps = jnp.arange(12)
  warm = schedules.linear_warmup(jnp.float32(2.0), jnp.float32(4.0))(steps)
  np.testing.assert_allclose(warm, 2.0 * np.minimum(1.0, np.arange(12) / 4.0), rtol=1e-6)
  no_warm = schedules.linear_warmup(jnp.float32(2.0), jnp.float32(0.0))(steps)
  np.testing.assert_allclose(no_warm, 2.0)
  cos = schedules.warmup_cosine(jnp.float32(2.0), jnp.float32(2.0), jnp.float32(10.0))(steps)
  t = np.arange(12.0)
  expected = np.where(t < 2, 2.0 * t / 2.0,
                      np.cos(np.pi * np.clip((t - 2) / 8.0, 0, 1)) + 1.0)
  np.testing.assert_allclose(cos, expected, atol=1e-6)


# --------------------------------------------------------------------------- gadam
@pytest.mark.parametrize("start,every", [(3, 2), (0, 1), (4, 3)])
def test_gadam_average_is_mean_of_iterates(start, every):
  hp = f32({**paper_hparams("gadam"), "learning_rate": 0.05, "weight_decay": 0.1,
            "average_start": start, "average_every": every})
  tx = build_optimizer("gadam")(hp)
  p = jnp.array([1.0, -2.0])
  state = tx.init(p)
  assert np.allclose(eval_params("gadam", state, p), p)  # nothing averaged yet
  iterates = []
  for _ in range(10):
    updates, state = tx.update(3.0 * p, state, p)
    p = optax.apply_updates(p, updates)
    iterates.append(np.asarray(p))
  taken = [w for t, w in enumerate(iterates, 1) if t >= start and (t - start) % every == 0]
  np.testing.assert_allclose(eval_params("gadam", state, p), np.mean(taken, axis=0),
                             rtol=1e-6)
  # The training iterate itself is AdamW's, not the average.
  ref = optax.adamw(0.05, weight_decay=0.1)
  q = jnp.array([1.0, -2.0])
  s = ref.init(q)
  for _ in range(10):
    u, s = ref.update(3.0 * q, s, q)
    q = optax.apply_updates(q, u)
  np.testing.assert_allclose(p, q, rtol=2e-5)


# --------------------------------------------------------------------------- guards
def test_skip_nonfinite_keeps_params_and_state_then_resumes():
  hp = f32({"learning_rate": 0.1, "b1": 0.9, "b2": 0.999, "eps": 1e-8})
  tx = build_optimizer("adam", skip_nonfinite=True)(hp)
  plain = build_optimizer("adam")(hp)
  p = {"w": jnp.array([1.0, 2.0])}
  state = tx.init(p)
  assert int(skip_count(state)) == 0
  bad = {"w": jnp.array([jnp.nan, 1.0])}
  updates, state2 = tx.update(bad, state, p)
  p2 = optax.apply_updates(p, updates)
  np.testing.assert_array_equal(p2["w"], p["w"])
  assert int(skip_count(state2)) == 1
  for a, b in zip(jax.tree.leaves(state2.inner_state), jax.tree.leaves(state.inner_state),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  good = {"w": jnp.array([0.5, -1.0])}
  updates, state3 = tx.update(good, state2, p2)
  ref_updates, _ = plain.update(good, plain.init(p), p)
  np.testing.assert_allclose(updates["w"], ref_updates["w"], rtol=1e-6)
  assert np.all(np.abs(updates["w"]) > 0.05)
  assert int(skip_count(state3)) == 1
  assert int(skip_count(plain.init(p))) == 0


def test_loss_spike_skips_spikes_and_counts():
  inner = optax.sgd(1.0)
  tx = loss_spike(inner, jnp.float32(2.0), jnp.float32(0.5))
  p = jnp.array([1.0])
  state = tx.init(p)
  moved = []
  for loss in [1.0, 1.2, 5.0, 1.1, jnp.nan, 2.0]:
    u, state = tx.update(jnp.array([1.0]), state, p, value=jnp.float32(loss))
    moved.append(float(u[0]) != 0.0)
  # mean after 1.0, 1.2: EMA 0.55 / 0.75 = 1.1 -> 5.0 > 2.2 spikes; NaN spikes.
  assert moved == [True, True, False, True, False, True]
  assert int(skip_count(state)) == 2
  with pytest.raises(ValueError, match="value=loss"):
    tx.update(jnp.array([1.0]), state, p)


def test_clip_enabled_keeps_old_signature():
  hp = f32({"learning_rate": 1.0, "clip": 0.5})
  tx = build_optimizer("sgd", True)(hp)
  u, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init({"w": jnp.zeros(2)}))
  np.testing.assert_allclose(u["w"], [-0.3, -0.4], rtol=1e-6)


def test_unknown_names_fail_early_with_known_names():
  with pytest.raises(ConfigError, match="unknown optimizer 'adamm'.*known: .*adam"):
    build_optimizer("adamm")
  with pytest.raises(ConfigError, match="unknown remedy 'global'.*global_norm"):
    build_optimizer("adam", remedies=["global"])
  with pytest.raises(ConfigError, match="unknown schedule 'cosine'.*warmup_cosine"):
    build_optimizer("adam", schedule="cosine")
  assert chain_hparam_keys("adam", True, schedule="linear_warmup") == (
    "b1", "b2", "clip", "eps", "learning_rate", "warmup_steps")


def test_schedule_free_eval_params_are_the_averaged_sequence():
  tx = build_optimizer("schedule_free_adamw", skip_nonfinite=True)(
    f32(paper_hparams("schedule_free_adamw")))
  p = {"w": jnp.array([1.0, -1.0])}
  state = tx.init(p)
  for _ in range(5):
    u, state = tx.update(jax.tree.map(lambda x: 2 * x, p), state, p)
    p = optax.apply_updates(p, u)
  sf_state = state.inner_state.inner_state
  expected = contrib.schedule_free_eval_params(sf_state, p)
  got = eval_params("schedule_free_adamw", state, p)
  np.testing.assert_allclose(got["w"], expected["w"])
  assert not np.allclose(got["w"], p["w"])
  assert eval_params("adam", state, p) is p


# --------------------------------------------------------------------------- all optimizers
# Learning rates where the paper's would not visibly move ten steps on this quadratic
# (prodigy's step-size estimate starts at 1e-6 and needs many steps to grow) or would
# overshoot it (lars' trust ratio is 1 on the zero biases).
TEST_LR = {"lars": 0.1, "prodigy": 10.0, "schedule_free_sgd": 0.1}


def quadratic_loss(params):
  return 0.5 * sum(jnp.sum(jnp.square(x - 0.5)) for x in jax.tree.leaves(params))


def train_ten(make, hp, params):
  tx = make(hp)

  def body(carry, _):
    p, s = carry
    loss, g = jax.value_and_grad(quadratic_loss)(p)
    u, s = tx.update(g, s, p, value=loss)
    return (optax.apply_updates(p, u), s), loss

  (p, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=10)
  return quadratic_loss(p)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_trains_under_jit_and_vmap(name):
  assert set(OPTIMIZER_INFO.get(name).reads) <= set(HPARAM_DEFAULTS)
  params = mlp_params()
  make = build_optimizer(name)
  hp = f32({**HPARAM_DEFAULTS, **OPTIMIZER_INFO.get(name).defaults})
  lr0 = TEST_LR.get(name, float(hp["learning_rate"]))
  lrs = [0.5 * lr0, lr0, 1.5 * lr0]
  single = jax.jit(lambda h: train_ten(make, h, params))
  alone = [float(single({**hp, "learning_rate": jnp.float32(lr)})) for lr in lrs]
  batched = {k: jnp.full((3,), v) for k, v in hp.items()}
  batched["learning_rate"] = jnp.asarray(lrs, jnp.float32)
  lanes = jax.jit(jax.vmap(lambda h: train_ten(make, h, params)))(batched)
  initial = float(quadratic_loss(params))
  assert all(loss < 0.9999 * initial for loss in alone), (initial, alone)
  assert len(set(alone)) == 3  # the learning rate is used
  np.testing.assert_allclose(lanes, alone, rtol=1e-5)


# --------------------------------------------------------------------------- one compile
def perturbed(i):
  """The i-th hp point: every key of HPARAM_DEFAULTS moved from its default."""
  unit = {"momentum", "b1", "b2", "b3", "decay", "spike_decay"}
  out = {}
  for k, v in HPARAM_DEFAULTS.items():
    if k in unit:
      out[k] = v - 0.02 * i
    elif k in ("decay_steps",):
      out[k] = 8.0 + i
    else:
      out[k] = v * (1.0 + 0.5 * i) + 0.5 * i * (v == 0.0)
  return f32(out)


@pytest.mark.parametrize("name", ["gadam", "adan", "ademamix", "adafactor", "momentum",
                                  "rmsprop"])
def test_chain_compiles_once_for_any_hparams(name):
  make = build_optimizer(name, remedies=tuple(n for n in REMEDIES if n != "skip_nonfinite"),
                         schedule="warmup_cosine", skip_nonfinite=True)
  params = mlp_params()
  traces = []

  def three_steps(hp):
    traces.append(1)
    tx = make(hp)
    p, s = params, tx.init(params)
    for _ in range(3):
      loss, g = jax.value_and_grad(quadratic_loss)(p)
      u, s = tx.update(g, s, p, value=loss)
      p = optax.apply_updates(p, u)
    return quadratic_loss(p)

  jitted = jax.jit(three_steps)
  results = [float(jitted(perturbed(i))) for i in range(4)]
  assert len(traces) == 1
  assert jitted._cache_size() == 1
  assert len(set(results)) == 4


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_unset_numbers_resolve_to_the_paper_then_the_shared_defaults(name):
  from gradlab.optim import resolve_numbers

  info = OPTIMIZER_INFO.get(name)
  numbers = resolve_numbers(name, {}, steps=100)
  for key in info.reads:
    expected = info.defaults.get(key, HPARAM_DEFAULTS[key])
    if key in info.steps_fraction:
      expected = float(int(100 * info.steps_fraction[key]))
    assert numbers.values[key] == expected
    assert numbers.sources[key] == ("paper" if key in info.defaults else "steps_fraction"
                                    if key in info.steps_fraction else "shared")
  set_all = resolve_numbers(name, {k: 0.5 for k in info.reads}, steps=100)
  assert all(set_all.values[k] == 0.5 and set_all.sources[k] == "config" for k in info.reads)


def test_batch_stats_recompute_is_the_cumulative_average_of_batch_statistics():
  """SWA's update (Izmailov et al. 2018): mean/var = average over batches of the batch
  mean/(biased) variance, whatever the statistics were before and the EMA momentum."""
  import flax.linen as nn

  from gradlab.optim import batch_stats

  bn = nn.BatchNorm(use_running_average=False, momentum=0.7)
  xs = jax.random.normal(jax.random.PRNGKey(1), (5, 16, 3)) * jnp.arange(1.0, 4.0) + 2.0
  stats = {"mean": jnp.full(3, 9.0), "var": jnp.full(3, 9.0)}  # stale: must not count
  params = bn.init(jax.random.PRNGKey(0), xs[0])["params"]

  def apply_train(s, x):
    return bn.apply({"params": params, "batch_stats": s}, x, mutable=["batch_stats"]
                    )[1]["batch_stats"]

  got = jax.jit(lambda s: batch_stats.recompute(apply_train, lambda k: xs[k], 5, s))(stats)
  x = np.asarray(xs, np.float64)
  np.testing.assert_allclose(got["mean"], x.mean(1).mean(0), rtol=1e-5)
  np.testing.assert_allclose(got["var"], x.var(1).mean(0), rtol=1e-4)
