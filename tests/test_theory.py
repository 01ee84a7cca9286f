"""gradlab.theory against closed forms, and its stability thresholds against simulation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import ndtr

from gradlab import theory as T
from gradlab.models.activations import ACTIVATIONS
from gradlab.registry import ConfigError

SELU_LAMBDA, SELU_ALPHA = T._SELU_LAMBDA, T._SELU_ALPHA
MEAN_FIELD_NAMES = set(T.MEAN_FIELD_ACTIVATIONS.names())


def test_activation_table_matches_the_models_activations_and_its_own_derivatives():
  assert set(ACTIVATIONS.names()) == MEAN_FIELD_NAMES
  x = np.array([-2.7, -1.1, -0.3, 0.2, 0.9, 2.4])  # away from the kinks at 0
  h = 1e-5
  for name in MEAN_FIELD_NAMES:
    a = T.MEAN_FIELD_ACTIVATIONS.get(name)
    np.testing.assert_allclose(a.phi(x), ACTIVATIONS.get(name)(jnp.asarray(x)), rtol=2e-6,
                               atol=2e-7, err_msg=name)
    # central differences in float64: phi' of phi, phi'' of phi'
    np.testing.assert_allclose(a.dphi(x), (a.phi(x + h) - a.phi(x - h)) / (2 * h), rtol=1e-8,
                               atol=1e-9, err_msg=name)
    np.testing.assert_allclose(a.d2phi(x), (a.dphi(x + h) - a.dphi(x - h)) / (2 * h),
                               rtol=1e-8, atol=1e-9, err_msg=name)


def test_scale_conversion_is_the_square():
  assert T.sigma_w2_from_scale(1.5) == pytest.approx(2.25)
  assert T.sigma_b2_from_scale(0.1) == pytest.approx(0.01)
  assert T.scale_from_variance(T.sigma_w2_from_scale(1.7)) == pytest.approx(1.7)


def test_relu_chi_1_is_half_sigma_w2_for_any_bias():
  sw2 = np.array([0.5, 1.0, 1.7, 1.99, 3.0])[:, None]
  sb2 = np.array([0.0, 0.05, 0.5, 2.0])[None, :]
  np.testing.assert_allclose(T.chi_1("relu", sw2, sb2), np.broadcast_to(sw2 / 2, (5, 4)),
                             rtol=1e-12)
  # q* of ReLU with bias solves q = sw2 q / 2 + sb2, and diverges for sw2 >= 2.
  np.testing.assert_allclose(T.q_star("relu", 1.2, 0.3), 0.3 / (1 - 0.6), rtol=1e-10)
  assert np.isinf(T.q_star("relu", 2.5, 0.1))


def test_linear_chi_1_is_sigma_w2():
  sw2 = np.array([0.3, 0.9, 0.99])
  np.testing.assert_allclose(T.chi_1("linear", sw2, 0.2), sw2, rtol=1e-12)
  np.testing.assert_allclose(T.q_star("linear", sw2, 0.2), 0.2 / (1 - sw2), rtol=1e-9)


@pytest.mark.parametrize("activation, expected", [("tanh", 1.0), ("erf", np.pi / 4),
                                                  ("relu", 2.0), ("linear", 1.0)])
def test_critical_sigma_w2_without_bias(activation, expected):
  # tanh, erf: q* = 0 and chi_1 = sigma_w2 phi'(0)^2, erf'(0)^2 = 4 / pi.
  assert abs(T.critical_sigma_w2(activation, 0.0) - expected) < 1e-6


def test_relu_critical_line_is_flat_and_tanh_rises_with_bias():
  np.testing.assert_allclose(T.critical_line("relu", [0.0, 0.1, 1.0]), 2.0, atol=1e-9)
  line = T.critical_line("tanh", np.array([0.0, 0.05, 0.5]))
  assert line[0] == pytest.approx(1.0, abs=1e-6) and np.all(np.diff(line) > 0)
  for sb2, sw2 in zip([0.05, 0.5], line[1:], strict=True):
    assert float(T.chi_1("tanh", sw2, sb2)) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("q", [0.05, 0.7, 3.0, 40.0, 1e3])
def test_erf_expectations_match_closed_forms(q):
  erf = T.MEAN_FIELD_ACTIVATIONS.get("erf")
  # E[erf(sqrt(q) z)^2] = (2/pi) arcsin(2q / (1 + 2q)); E[erf'^2] = 4 / (pi sqrt(1 + 4q)).
  assert T.gaussian_expectation(lambda u: erf.phi(u) ** 2, q) == pytest.approx(
    2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)), abs=1e-10)
  assert T.gaussian_expectation(lambda u: erf.dphi(u) ** 2, q) == pytest.approx(
    4 / (np.pi * np.sqrt(1 + 4 * q)), rel=1e-8)
  for c in (-0.6, 0.3, 0.95):
    assert T._pair_expectation(erf.phi, erf.phi, q, c) == pytest.approx(
      2 / np.pi * np.arcsin(2 * q * c / (1 + 2 * q)), abs=1e-10)
    assert T._pair_expectation(erf.dphi, erf.dphi, q, c) == pytest.approx(
      4 / (np.pi * np.sqrt((1 + 2 * q) ** 2 - (2 * q * c) ** 2)), rel=1e-8)


def test_erf_fixed_point_and_chi_1_match_the_closed_form_map():
  sw2, sb2 = 2.0, 0.1
  q = brentq(lambda q: sw2 * 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)) + sb2 - q, 1e-6, 10)
  assert T.q_star("erf", sw2, sb2) == pytest.approx(q, rel=1e-10)
  assert T.chi_1("erf", sw2, sb2) == pytest.approx(sw2 * 4 / (np.pi * np.sqrt(1 + 4 * q)),
                                                   rel=1e-10)


@pytest.mark.parametrize("q", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("c", [-0.5, 0.0, 0.6, 0.99])
def test_relu_pair_expectations_match_the_arccosine_kernel(q, c):
  # Cho and Saul 2009: E[relu(u1) relu(u2)] = q (sin t + (pi - t) cos t) / (2 pi),
  # E[1[u1 > 0] 1[u2 > 0]] = (pi - t) / (2 pi), t = arccos c.
  relu, t = T.MEAN_FIELD_ACTIVATIONS.get("relu"), np.arccos(c)
  assert T._pair_expectation(relu.phi, relu.phi, q, c) == pytest.approx(
    q * (np.sin(t) + (np.pi - t) * c) / (2 * np.pi), abs=1e-12)
  assert T._pair_expectation(relu.dphi, relu.dphi, q, c) == pytest.approx(
    (np.pi - t) / (2 * np.pi), abs=1e-12)


def test_selu_self_normalizes_and_its_chi_1_matches_the_closed_form():
  # Klambauer et al. 2017: at sigma_w2 = 1, sigma_b2 = 0, q* = 1 is SELU's fixed point.
  assert T.q_star("selu", 1.0, 0.0, q0=2.0) == pytest.approx(1.0, abs=1e-10)
  for q in (0.3, 1.0, 5.0):  # E[selu'^2] = l^2/2 + l^2 a^2 e^{2q} Phi(-2 sqrt q)
    expected = SELU_LAMBDA**2 * (0.5 + SELU_ALPHA**2 * np.exp(2 * q) * ndtr(-2 * np.sqrt(q)))
    assert T.chi_1("selu", 1.0, 0.0, q=q) == pytest.approx(expected, rel=1e-10)


def test_depth_scales_in_the_ordered_phase():
  sw2, sb2 = np.array([0.6, 1.2, 1.6]), 0.05
  chi = T.chi_1("tanh", sw2, sb2)
  np.testing.assert_array_equal(T.c_star("tanh", sw2, sb2), 1.0)
  np.testing.assert_allclose(T.xi_c("tanh", sw2, sb2), -1 / np.log(chi), rtol=1e-12)
  np.testing.assert_allclose(T.trainable_depth("tanh", sw2, sb2), -6 / np.log(chi), rtol=1e-12)
  # ReLU: phi'' phi = 0, so the length map's slope is chi_1 = sw2 / 2.
  np.testing.assert_allclose(T.xi_q("relu", 1.5, 0.2), -1 / np.log(0.75), rtol=1e-12)
  # linear: q^{l+1} = sw2 q^l + sb2 converges at rate sw2.
  np.testing.assert_allclose(T.xi_q("linear", 0.5, 0.2), -1 / np.log(0.5), rtol=1e-12)


def test_xi_c_diverges_at_the_critical_line_and_is_finite_in_chaos():
  crit = T.critical_sigma_w2("tanh", 0.05)
  assert T.xi_c("tanh", crit, 0.05) > 1e4
  assert T.xi_c("tanh", crit * 1.05, 0.05) > T.xi_c("tanh", crit * 1.3, 0.05) > 1.0
  # chaos: c* < 1 is a fixed point of the correlation map; odd phi, no bias -> c* = 0.
  c = float(T.c_star("tanh", 2.5, 0.05))
  assert 0 < c < 1 and float(T.correlation_map("tanh", c, 2.5, 0.05)) == pytest.approx(c, 1e-9)
  assert T.c_star("tanh", 2.0, 0.0) == pytest.approx(0.0, abs=1e-9)
  # where q* diverges (ReLU, sigma_w2 > 2) the correlation quantities are undefined.
  assert np.isnan(T.c_star("relu", 2.5, 0.1)) and np.isnan(T.xi_c("relu", 2.5, 0.1))


def test_mean_field_trajectory_converges_to_the_fixed_points():
  q, c = T.mean_field_trajectory("tanh", 2.5, 0.05, depth=200, q_input=1.0, c_input=0.9)
  assert q[0] == pytest.approx(2.55) and c[0] == pytest.approx((2.5 * 0.9 + 0.05) / 2.55)
  assert q[-1] == pytest.approx(float(T.q_star("tanh", 2.5, 0.05)), rel=1e-9)
  assert c[-1] == pytest.approx(float(T.c_star("tanh", 2.5, 0.05)), rel=1e-6)


def test_sharpness_thresholds_equal_the_formulas():
  assert T.sharpness_threshold("sgd", 0.1) == pytest.approx(20.0)
  assert T.sharpness_threshold("gd", 0.1) == pytest.approx(20.0)
  assert T.sharpness_threshold("momentum", 0.01, beta=0.9) == pytest.approx(380.0)
  assert T.sharpness_threshold("nesterov", 0.01, beta=0.9) == pytest.approx(3.8 / 2.8 / 0.01)
  assert T.sharpness_threshold("adam", 1e-3, beta=0.9) == pytest.approx(38_000.0)
  np.testing.assert_allclose(T.sharpness_threshold("adamw", np.array([1.0, 2.0]), 0.5),
                             [6.0, 3.0])
  with pytest.raises(ConfigError, match="did you mean 'adam'"):
    T.sharpness_threshold("adamm", 0.1)


def _run_quadratic(eigs, lr, beta=0.0, kind="heavy_ball", precond=None, steps=3000):
  """Momentum methods on 0.5 x^T diag(eigs) x (optax's conventions); "ema" with a fixed
  diagonal preconditioner is Adam with its preconditioner frozen."""
  eigs = np.asarray(eigs, float)
  p = np.ones_like(eigs) if precond is None else np.asarray(precond, float)
  x, m = np.ones_like(eigs), np.zeros_like(eigs)
  for _ in range(steps):
    g = eigs * x
    m = beta * m + (1 - beta) * g if kind == "ema" else beta * m + g
    x = x - lr * (beta * m + g if kind == "nesterov" else m) / p
  return float(np.abs(x).max())


def test_thresholds_separate_convergence_from_divergence_on_a_quadratic():
  eigs = [10.0, 3.0, 1.0]
  for name, beta, kind in (("sgd", 0.0, "heavy_ball"), ("momentum", 0.9, "heavy_ball"),
                           ("nesterov", 0.9, "nesterov")):
    lr_edge = T.sharpness_threshold(name, 1.0, beta) / max(eigs)  # 2/lr-like limit = 10
    assert _run_quadratic(eigs, 0.98 * lr_edge, beta, kind) < 1e-3, name
    assert _run_quadratic(eigs, 1.02 * lr_edge, beta, kind) > 1e3, name
  # Adam with a frozen preconditioner P is EMA momentum on P^{-1} H: the threshold applies
  # to the preconditioned sharpness max(eigs / P).
  precond = np.array([4.0, 0.5, 2.0])
  lr_edge = T.sharpness_threshold("adam", 1.0, 0.9) / max(np.asarray(eigs) / precond)
  assert _run_quadratic(eigs, 0.98 * lr_edge, 0.9, "ema", precond) < 1e-3
  assert _run_quadratic(eigs, 1.02 * lr_edge, 0.9, "ema", precond) > 1e3


def test_pascanu_condition_and_a_tanh_rnn_that_obeys_it():
  assert T.pascanu_condition(0.9, T.ACTIVATION_DERIVATIVE_BOUND["tanh"]) == "vanishes"
  assert T.pascanu_condition(1.1, 1.0) == "may explode"
  assert T.pascanu_condition(3.9, T.ACTIVATION_DERIVATIVE_BOUND["sigmoid"]) == "vanishes"
  assert T.pascanu_condition(4.1, 0.25) == "may explode"
  # h_t = tanh(W h_{t-1}): ||dh_T / dh_0|| <= (s gamma)^T when s gamma < 1; with s > 1
  # and small states (tanh ~ linear) the gradient grows.
  rng = np.random.default_rng(0)
  orth, _ = np.linalg.qr(rng.normal(size=(32, 32)))
  steps = 30

  def jac_norm(s, h0_scale):
    w = jnp.asarray(s * orth, jnp.float32)
    run = lambda h: jax.lax.fori_loop(0, steps, lambda _, h: jnp.tanh(w @ h), h)
    h0 = jnp.asarray(h0_scale * rng.normal(size=32), jnp.float32)
    return float(jnp.linalg.norm(jax.jacfwd(run)(h0), 2))

  assert jac_norm(0.9, 1.0) <= 0.9**steps * (1 + 1e-4)
  assert jac_norm(1.2, 1e-3) > 1.0
