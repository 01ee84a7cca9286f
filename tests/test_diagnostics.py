"""gradlab.diagnostics: signal propagation vs mean-field theory, Hessian tools vs known
spectra, explosion-onset localization on hand-made arrays and on a real network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradlab import theory as T
from gradlab.diagnostics import hessian as H
from gradlab.diagnostics import onset as O
from gradlab.diagnostics import signal as S
from gradlab.models.init import scale_by, scale_params
from gradlab.models.mlp import MLP


def _init(model: MLP, key, in_dim: int, sigma_w: float = 1.0, sigma_b: float = 1.0):
  unit = jax.jit(lambda k: model.init(k, jnp.zeros((1, in_dim)))["params"])(key)
  return scale_params(unit, scale_by(sigma_w, sigma_b))


@pytest.mark.parametrize("activation, layer_norm, use_bias", [("tanh", False, True),
                                                              ("relu", True, False)])
def test_mlp_forward_equals_the_flax_module(activation, layer_norm, use_bias):
  model = MLP(depth=3, width=24, num_outputs=5, activation=activation, layer_norm=layer_norm,
              use_bias=use_bias)
  params = _init(model, jax.random.PRNGKey(0), 7, 1.3, 0.2)
  x = jax.random.normal(jax.random.PRNGKey(1), (9, 7))
  out, pre = jax.jit(lambda p, x: S.mlp_forward(p, activation, x))(params, x)
  np.testing.assert_allclose(out, model.apply({"params": params}, x), rtol=1e-5, atol=1e-5)
  assert len(pre) == 3 and pre[0].shape == (9, 24)
  np.testing.assert_allclose(pre[0], x @ params["dense_0"]["kernel"]
                             + (params["dense_0"]["bias"] if use_bias else 0), rtol=1e-6)


# One wide deep tanh net, three seeds of unit-scale weights rescaled per sigma_w2.
WIDTH, DEPTH, IN_DIM, BATCH, SEEDS, SIGMA_B2 = 1024, 20, 512, 16, 3, 0.05
SKIP = 5  # layers before the forward pass settles (q^l reaches q* within ~2 xi_q)


@pytest.fixture(scope="module")
def wide_nets():
  model = MLP(depth=DEPTH, width=WIDTH, num_outputs=10, activation="tanh")
  init = jax.jit(lambda k: model.init(k, jnp.zeros((1, IN_DIM)))["params"])
  units = [init(jax.random.PRNGKey(s)) for s in range(SEEDS)]
  xs = [jax.random.normal(jax.random.PRNGKey(100 + s), (BATCH, IN_DIM)) for s in range(SEEDS)]
  return units, xs


@pytest.mark.parametrize("sigma_w2", [0.8, 1.5, 2.5])
def test_wide_tanh_net_matches_mean_field_chi_1_q_and_c(wide_nets, sigma_w2):
  units, xs = wide_nets
  stats_fn = jax.jit(lambda p, x: S.signal_stats(p, "tanh", x))
  stats = [stats_fn(scale_params(u, scale_by(np.sqrt(sigma_w2), np.sqrt(SIGMA_B2))), x)
           for u, x in zip(units, xs, strict=True)]
  chi_measured = np.mean([s.chi_1[SKIP:] for s in stats])
  chi_theory = float(T.chi_1("tanh", sigma_w2, SIGMA_B2))
  assert chi_measured == pytest.approx(chi_theory, rel=0.02)  # measured: within 0.6%
  q = np.mean([s.q for s in stats], 0)
  assert np.mean(q[SKIP:]) == pytest.approx(float(T.q_star("tanh", sigma_w2, SIGMA_B2)),
                                            rel=0.02)  # measured: within 0.4%
  # Layer by layer, q^l and c^l follow the mean-field maps from the inputs' statistics, up
  # to the width-1024 fluctuation of each layer (~sqrt(2 / 1024) = 4% per seed).
  x = np.asarray(xs[0])
  q_in = float(np.mean(x * x))
  q_mf, c_mf = T.mean_field_trajectory("tanh", sigma_w2, SIGMA_B2, DEPTH, q_input=q_in,
                                       c_input=float(np.mean(x * np.roll(x, 1, 0))) / q_in)
  assert np.mean(np.abs(q / q_mf - 1)) < 0.03 and np.max(np.abs(q / q_mf - 1)) < 0.1
  np.testing.assert_allclose(np.mean([s.c for s in stats], 0), c_mf, atol=0.04)


def test_jacobian_of_a_linear_net_is_the_product_of_its_kernels():
  model = MLP(depth=3, width=40, num_outputs=6, activation="linear", use_bias=False)
  params = _init(model, jax.random.PRNGKey(0), 30, 1.1)
  x = jax.random.normal(jax.random.PRNGKey(1), (30,))
  kernels = [params[f"dense_{i}"]["kernel"] for i in range(3)] + [params["readout"]["kernel"]]
  expected = np.linalg.svd(np.linalg.multi_dot([np.asarray(k, np.float64) for k in kernels]),
                           compute_uv=False)
  svals = jax.jit(lambda p, x, to: S.jacobian_singular_values(p, "linear", x, to=to),
                  static_argnums=2)
  np.testing.assert_allclose(svals(params, x, "readout"), expected, rtol=1e-4)
  hidden = np.linalg.svd(np.linalg.multi_dot([np.asarray(k, np.float64) for k in kernels[:3]]),
                         compute_uv=False)
  np.testing.assert_allclose(svals(params, x, "hidden"), hidden, rtol=1e-4)


def test_randomized_jacobian_svd_matches_the_exact_top_values():
  model = MLP(depth=3, width=64, num_outputs=10, activation="tanh")
  params = _init(model, jax.random.PRNGKey(2), 48, 1.4, 0.3)
  x = jax.random.normal(jax.random.PRNGKey(3), (48,))
  svals = jax.jit(lambda p, x, max_entries: S.jacobian_singular_values(
    p, "tanh", x, key=jax.random.PRNGKey(4), to="hidden", num_values=6,
    exact_max_entries=max_entries), static_argnums=2)
  exact = svals(params, x, 2**22)  # "auto" below the threshold: the full Jacobian
  approx = svals(params, x, 100)  # above: the randomized SVD's top 6
  assert exact.shape == (48,) and approx.shape == (6,)
  np.testing.assert_allclose(approx, exact[:6], rtol=1e-3)


# --------------------------------------------------------------------------- Hessian

EIGS = np.array([9.0, 6.0, 4.0, 2.5, 1.0, 0.5, -0.3, 0.1])


def _quadratic():
  """0.5 x^T A x over a two-leaf pytree, A = Q diag(EIGS) Q^T."""
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))
  a = jnp.asarray((q * EIGS) @ q.T, jnp.float32)
  flat = lambda p: jnp.concatenate([p["w"].ravel(), p["b"]])
  loss = lambda p: 0.5 * flat(p) @ a @ flat(p)
  params = {"w": jnp.ones((2, 3)), "b": jnp.ones((2,))}
  return loss, params, a, flat


def test_hvp_and_power_iteration_on_a_known_quadratic():
  loss, params, a, flat = _quadratic()
  v = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([1.0, -2.0])}
  np.testing.assert_allclose(flat(jax.jit(H.hvp, static_argnums=0)(loss, params, v)),
                             a @ flat(v), rtol=1e-5, atol=1e-5)
  lam, vec = jax.jit(lambda p, k: H.top_hessian_eigenvalue(loss, p, k, 100))(
    params, jax.random.PRNGKey(0))
  assert float(lam) == pytest.approx(9.0, rel=1e-3)
  assert float(optax.global_norm(vec)) == pytest.approx(1.0, rel=1e-5)

  def scan_step(carry, i):  # jittable inside lax.scan, with a key per step
    lam, _ = H.top_hessian_eigenvalue(loss, params, jax.random.fold_in(carry, i), 100)
    return carry, lam

  _, lams = jax.jit(lambda k: jax.lax.scan(scan_step, k, jnp.arange(3)))(jax.random.PRNGKey(1))
  np.testing.assert_allclose(lams, 9.0, rtol=1e-3)


def test_preconditioned_sharpness_and_adams_preconditioner():
  loss, params, a, flat = _quadratic()
  precond = {"w": jnp.array([[1.0, 2.0, 4.0], [0.5, 1.0, 3.0]]), "b": jnp.array([2.0, 0.25])}
  p_inv_sqrt = 1.0 / np.sqrt(np.asarray(flat(precond), np.float64))
  expected = np.linalg.eigvalsh(p_inv_sqrt[:, None] * np.asarray(a, np.float64) * p_inv_sqrt)
  top = expected[np.argmax(np.abs(expected))]
  lam, _ = jax.jit(lambda p, pc, k: H.preconditioned_sharpness(loss, p, pc, k, 300))(
    params, precond, jax.random.PRNGKey(0))
  assert float(lam) == pytest.approx(top, rel=1e-3)
  # Adam's state, found inside inject_hyperparams + chain: P = sqrt(nu_hat) + eps.
  tx = optax.chain(optax.clip_by_global_norm(1e3),
                   optax.inject_hyperparams(optax.adam)(learning_rate=1e-3, b2=0.99, eps=1e-3))
  state, p, g2 = tx.init(params), params, jax.tree_util.tree_map(jnp.zeros_like, params)
  for _ in range(3):
    g = jax.grad(loss)(p)
    g2 = jax.tree_util.tree_map(lambda s, x: 0.99 * s + 0.01 * x * x, g2, g)
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
  adam = H.find_adam_state(state)
  got = H.adam_preconditioner(adam.nu, adam.count, b2=0.99, eps=1e-3)
  want = jax.tree_util.tree_map(lambda s: jnp.sqrt(s / (1 - 0.99**3)) + 1e-3, g2)
  np.testing.assert_allclose(flat(got), flat(want), rtol=1e-5)
  with_b1 = H.adam_preconditioner(adam.nu, adam.count, b2=0.99, eps=1e-3, b1=0.9)
  np.testing.assert_allclose(flat(with_b1), (1 - 0.9**4) * flat(want), rtol=1e-5)
  with pytest.raises(ValueError, match="ScaleByAdamState"):
    H.find_adam_state(optax.sgd(0.1).init(params))


def test_power_iteration_to_a_tolerance_converges_and_says_so():
  """EIGS's top two are 9 and 6 (gap 2/3): with tol 1e-4 the estimate is within tol of 9
  and flagged converged before the maximum; 3 iterations are too few (flagged not
  converged, 3 iterations used); tol 0 runs the maximum and never claims convergence.
  Under vmap each lane keeps its own count."""
  loss, params, _, _ = _quadratic()
  run = jax.jit(lambda k, n, tol: H.top_eigenvalue(lambda v: H.hvp(loss, params, v), params,
                                                   k, n, tol), static_argnums=(1, 2))
  good = run(jax.random.PRNGKey(0), 500, 1e-4)
  assert bool(good.converged) and 3 < int(good.iters) < 500
  assert abs(float(good.value) - 9.0) <= 1e-4 * 9.0
  few = run(jax.random.PRNGKey(0), 3, 1e-4)
  assert not bool(few.converged) and int(few.iters) == 3
  assert abs(float(few.value) - 9.0) > 1e-4 * 9.0
  fixed = run(jax.random.PRNGKey(0), 40, 0.0)
  assert not bool(fixed.converged) and int(fixed.iters) == 40
  lanes = jax.jit(jax.vmap(lambda k, t: H.power_iterate(
    lambda v: H.hvp(loss, params, v), params, k, 500, 1e-2 * t)))(
    jax.random.split(jax.random.PRNGKey(1), 2), jnp.array([1.0, 1e-4]))
  assert bool(lanes.converged.all()) and int(lanes.iters[0]) < int(lanes.iters[1])


def test_top_eigenvalue_of_a_negative_dominated_spectrum_uses_the_second_pass():
  """Spectrum {-10, 4, 1}: power iteration lands on -10; the shifted pass finds 4 and its
  iterations are added."""
  a = jnp.diag(jnp.array([-10.0, 4.0, 1.0]))
  got = H.top_eigenvalue(lambda v: a @ v, jnp.ones(3), jax.random.PRNGKey(0), 400, 1e-6)
  assert float(got.value) == pytest.approx(4.0, rel=1e-4)
  assert bool(got.converged)
  one = H.power_iterate(lambda v: a @ v, jnp.ones(3), jax.random.PRNGKey(0), 400, 1e-6)
  assert int(got.iters) > int(one.iters)


def test_update_ratio_by_layer():
  params = {"a": {"kernel": jnp.full((2, 2), 2.0)}, "b": {"kernel": jnp.ones((3,))}}
  updates = {"a": {"kernel": jnp.full((2, 2), 0.2)}, "b": {"kernel": jnp.full((3,), -0.5)}}
  np.testing.assert_allclose(H.update_ratio_by_layer(updates, params, ["b", "a"]), [0.5, 0.1],
                             rtol=1e-6)


def test_lanczos_recovers_a_known_spectrum():
  n = 50
  q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(n, n)))
  a = jnp.asarray((q * np.arange(1.0, n + 1)) @ q.T, jnp.float32)
  v0 = jax.random.normal(jax.random.PRNGKey(0), (n,))
  spectrum = jax.jit(lambda v0, m: H.ritz(*H.lanczos(lambda v: a @ v, v0, m)), static_argnums=1)
  values, weights = spectrum(v0, n)  # m = n: every eigenvalue
  np.testing.assert_allclose(values, np.arange(1.0, n + 1), atol=1e-3)
  assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)
  values, weights = spectrum(v0, 20)  # m < n: the extremes
  assert float(values[-1]) == pytest.approx(50.0, rel=1e-4)
  assert float(values[0]) == pytest.approx(1.0, rel=1e-2)
  # Breakdown: 3 distinct eigenvalues exhaust the Krylov space after 3 steps; the weights
  # of a uniform start vector are the multiplicities / n, the other Ritz values weigh 0.
  d = jnp.array([1.0, 1, 1, 2, 2, 2, 5, 5, 5, 5])
  values, weights = jax.jit(lambda v0: H.ritz(*H.lanczos(lambda v: d * v, v0, 10)))(
    jnp.ones(10))
  big = weights > 1e-6
  np.testing.assert_allclose(values[big], [1.0, 2.0, 5.0], rtol=1e-5)
  np.testing.assert_allclose(weights[big], [0.3, 0.3, 0.4], rtol=1e-5)


def test_hessian_slq_and_spectral_density_on_a_quadratic():
  loss, params, _, _ = _quadratic()
  values, weights = jax.jit(lambda p, k: H.hessian_slq(loss, p, k, num_probes=3, num_steps=8))(
    params, jax.random.PRNGKey(0))
  assert values.shape == weights.shape == (3, 8)
  np.testing.assert_allclose(np.sort(values, -1), np.tile(np.sort(EIGS), (3, 1)), atol=1e-4)
  grid = jnp.linspace(-3.0, 12.0, 1501)
  density = H.spectral_density(values, weights, grid, sigma=0.1)
  assert float(jnp.sum(density) * (grid[1] - grid[0])) == pytest.approx(1.0, abs=1e-3)
  # The density's mean is the mean Rayleigh quotient, about tr(A) / n for random probes.
  mean = float(jnp.sum(grid * density) * (grid[1] - grid[0]))
  assert mean == pytest.approx(float(jnp.mean(jnp.sum(values * weights, -1))), abs=1e-3)


# ----------------------------------------------------------------------------- onset


def _hand_made():
  g = np.ones((6, 4))
  g[:, 0] = [2.0, 2.0, 3.0, 4.0, 50.0, 80.0]  # passes 10x at step 4
  g[:, 1] = [1.0, 1.0, 1.0, 12.0, 20.0, 30.0]  # 12x at step 3
  g[:, 2] = [0.5, 0.5, 1.0, 7.5, 9.0, 10.0]  # 15x at step 3: the larger ratio wins the tie
  g[:, 3] = [1.0, 1.0, 1.0, 1.0, 1.0, np.nan]  # non-finite at step 5 (never "exploded")
  return g


def test_explosion_onset_on_a_hand_made_array():
  step, layer = O.explosion_onset(_hand_made(), 10.0)
  assert (int(step), int(layer)) == (3, 2)
  step, layer = O.explosion_onset(_hand_made(), 10.0, steps=np.arange(6) * 100)
  assert (int(step), int(layer)) == (300, 2)
  assert tuple(map(int, O.explosion_onset(_hand_made(), 1e3))) == (-1, -1)
  # vmapped over runs
  runs = jnp.stack([jnp.asarray(_hand_made()), jnp.ones((6, 4))])
  steps, layers = jax.vmap(lambda g: O.explosion_onset(g, 10.0))(runs)
  assert steps.tolist() == [3, -1] and layers.tolist() == [2, -1]


def test_first_nonfinite_on_a_hand_made_array():
  flags = np.ones((5, 4), bool)
  flags[2, [1, 3]] = False
  flags[3:, :] = False
  assert tuple(map(int, O.first_nonfinite(flags))) == (2, 1)
  assert tuple(map(int, O.first_nonfinite(flags, direction="backward"))) == (2, 3)
  assert tuple(map(int, O.first_nonfinite(np.ones((5, 4), bool)))) == (-1, -1)
  with pytest.raises(ValueError, match="unknown direction"):
    O.first_nonfinite(flags, direction="sideways")


def test_onset_tracker_in_a_scan_agrees_with_the_post_hoc_rules():
  g = jnp.asarray(_hand_made())

  def body(state, inputs):
    step, row = inputs
    return O.onset_tracker_update(state, step, row, 10.0), None

  state, _ = jax.jit(lambda g: jax.lax.scan(body, O.onset_tracker_init(4),
                                            (jnp.arange(6), g)))(g)
  summary = {k: float(v) for k, v in O.onset_summary(state).items()}
  assert summary == {"onset_step": 3, "onset_layer": 2, "onset_ratio": 15.0,
                     "nonfinite_step": 5, "nonfinite_layer": 3}


def test_onset_names_the_layer_that_blows_up_in_a_real_network():
  """LayerNorm after each Dense makes the loss invariant to a layer's kernel scale, so
  shrinking dense_3's kernel by 0.7 per step (weight decay on that layer only) multiplies
  ITS gradient by 1/0.7 per step and leaves the others nearly unchanged (lr is tiny):
  dense_3 passes 10x its step-0 gradient norm at step 7 (0.7^-7 = 12.1, 0.7^-6 = 8.5)."""
  model = MLP(depth=5, width=16, num_outputs=3, activation="relu", layer_norm=True,
              use_bias=False)
  params = _init(model, jax.random.PRNGKey(0), 8)
  names = [f"dense_{i}" for i in range(5)] + ["readout"]
  x = jax.random.normal(jax.random.PRNGKey(1), (32, 8))
  y = jax.random.randint(jax.random.PRNGKey(2), (32,), 0, 3)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
    model.apply({"params": p}, x), y).mean()
  decay_only_dense_3 = jax.tree_util.tree_map_with_path(
    lambda path, _: path[0].key == "dense_3" and path[-1].key == "kernel", params)
  tx = optax.chain(optax.masked(optax.add_decayed_weights(0.3 / 1e-5), decay_only_dense_3),
                   optax.sgd(1e-5))

  def step_fn(carry, step):
    p, opt_state, tracker = carry
    grads = jax.grad(loss)(p)
    norms = jnp.stack([optax.global_norm(grads[n]) for n in names])
    tracker = O.onset_tracker_update(tracker, step, norms, 10.0)
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state, tracker), norms

  carry = (params, tx.init(params), O.onset_tracker_init(len(names)))
  (_, _, tracker), norms = jax.jit(lambda c: jax.lax.scan(step_fn, c, jnp.arange(12)))(carry)
  assert (int(tracker.onset_step), int(tracker.onset_layer)) == (7, 3)
  assert tuple(map(int, O.explosion_onset(norms, 10.0))) == (7, 3)
  ratios = np.asarray(norms[:9] / norms[0])
  np.testing.assert_allclose(ratios[:, 3], 0.7 ** -np.arange(9.0), rtol=0.02)
  np.testing.assert_allclose(np.delete(ratios, 3, axis=1), 1.0, atol=0.02)

  # Non-finite localization: an inf planted in dense_2's kernel shows up first at layer 2.
  broken = jax.tree_util.tree_map(lambda v: v, params)
  broken["dense_2"]["kernel"] = broken["dense_2"]["kernel"].at[0, 0].set(jnp.inf)
  finite = jax.jit(lambda p: S.preactivation_finite(p, "relu", x))
  flags = jnp.stack([finite(p) for p in (params, broken)])
  assert flags[0].all() and flags[1].tolist() == [True, True, False, False, False]
  assert tuple(map(int, O.first_nonfinite(flags))) == (1, 2)
