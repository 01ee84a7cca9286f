"""Closed-form predictions laid over the measured regime maps (numpy, float64).

1. Mean-field signal propagation in a deep random MLP (Poole et al. 2016, "Exponential
   expressivity in deep neural networks through transient chaos", sec. 2; Schoenholz et
   al. 2017, "Deep information propagation", secs. 2, 3, 5). Layer l computes
   h^l = W^l phi(h^{l-1}) + b^l, W_ij ~ N(0, sigma_w2 / N), b_i ~ N(0, sigma_b2):
   - length map  q^l = sigma_w2 E_z[phi(sqrt(q^{l-1}) z)^2] + sigma_b2 -> fixed point q*;
   - chi_1 = sigma_w2 E_z[phi'(sqrt(q*) z)^2]: the correlation map's slope at c = 1
     (order < 1 < chaos) and the backward layer-to-layer ratio of mean squared gradients;
   - correlation map  c^l = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q^l, u1 = sqrt(q) z1,
     u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2) -> fixed point c*;
   - depth scales  xi_q^{-1} = -log(chi_1 + sigma_w2 E[phi''(sqrt(q*) z) phi(sqrt(q*) z)]),
     xi_c^{-1} = -log(sigma_w2 E[phi'(u1) phi'(u2)]) at c*; trainable depth ~ 6 xi_c;
   - the critical line: sigma_w2 with chi_1 = 1, per sigma_b2.
   Public functions take the papers' VARIANCES and broadcast over arrays of them; gradlab's
   ``sigma_w`` is the weight SCALE (`gradlab.models.init`): convert with
   `sigma_w2_from_scale` / `sigma_b2_from_scale` only.
2. Edge-of-stability sharpness limits for a learning rate (Cohen et al. 2021, "Gradient
   descent on neural networks typically occurs at the edge of stability"; Cohen et al.
   2022, "Adaptive gradient methods at the edge of stability") and
3. the recurrent-weight condition of Pascanu et al. 2013 ("On the difficulty of training
   recurrent neural networks"): both live in `gradlab.stability` and are re-exported here,
   so ``gradlab.theory`` stays the one door to every closed form.

Quadrature. Gaussian expectations are composite Gauss-Legendre sums on panels graded
toward z = 0: in 1D on each side of 0; in 2D in polar coordinates, radius times the four
angular sectors between the rays where u1 = 0 or u2 = 0. Every activation's structure sits
at u = 0 (the kinks of ReLU and SELU, the width-1/sqrt(q) step of tanh, erf, sigmoid), so
no node falls on a kink and the rules match the erf, ReLU and SELU closed forms to 1e-8
(relative) or better for q up to 1e4. Gauss-Hermite quadrature (even node count) was
tried first and dropped: exact for ReLU by symmetry, but with 200 nodes off by 5e-3 in
SELU's chi_1 at q = 1 and by 17% in erf's at q = 40. phi', phi'' are analytic
(`MEAN_FIELD_ACTIVATIONS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.special import erf, expit, ndtr

from gradlab.registry import Registry
from gradlab.stability import (  # noqa: F401  (re-exported: theory is the one door)
  ACTIVATION_DERIVATIVE_BOUND,
  SHARPNESS_THRESHOLDS,
  pascanu_condition,
  sharpness_threshold,
)

ArrayLike = float | np.ndarray
Fn = Callable[[np.ndarray], np.ndarray]

NODES_PER_PANEL = 12
Z_MAX = 10.0  # |z| and the polar radius are integrated up to Z_MAX (tail mass < 1e-21)
Q_MAX = 1e12  # q beyond this counts as divergent (q* = inf)
# Panel breaks, graded toward 0: the radius (or |z|), and a fraction of an angular sector.
_RADIAL_BREAKS = np.array([0, 1 / 256, 1 / 64, 1 / 16, 1 / 4, 1 / 2, 1, 2, 3, 4.5, 6.5, Z_MAX])
_SECTOR_BREAKS = np.array([0, 1 / 256, 1 / 32, 1 / 8, 1 / 2, 7 / 8, 31 / 32, 255 / 256, 1])



def _brentq(*args: Any, **kwargs: Any) -> float:
  """scipy's brentq, imported on first use: scipy.optimize costs 0.4 s of every
  command's start-up, and most commands never need a root."""
  from scipy.optimize import brentq

  return brentq(*args, **kwargs)

def _panel_rule(breaks: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Composite Gauss-Legendre nodes and weights with n nodes on each panel of `breaks`."""
  x, w = leggauss(n)
  lo, hi = breaks[:-1, None], breaks[1:, None]
  return (lo + (hi - lo) * 0.5 * (x + 1.0)).ravel(), ((hi - lo) * 0.5 * w).ravel()


_R, _WR = _panel_rule(_RADIAL_BREAKS, NODES_PER_PANEL)
_Z1 = np.concatenate([-_R[::-1], _R])  # 1D rule for N(0, 1): both half-lines
_W1 = np.concatenate([_WR[::-1], _WR]) * np.exp(-0.5 * np.concatenate([_R[::-1], _R]) ** 2)
_W1 = _W1 / np.sqrt(2.0 * np.pi)
_WR_POLAR = _WR * _R * np.exp(-0.5 * _R**2)  # radial measure r e^{-r^2/2} dr
_T_SECTOR, _W_SECTOR = _panel_rule(_SECTOR_BREAKS, NODES_PER_PANEL)

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA = 1.0507009873554804934193349852946
_SQRT_2PI = np.sqrt(2.0 * np.pi)


def sigma_w2_from_scale(sigma_w: ArrayLike) -> ArrayLike:
  """The papers' weight variance sigma_w2 from gradlab's weight scale: sigma_w ** 2."""
  return np.square(sigma_w)


def sigma_b2_from_scale(sigma_b: ArrayLike) -> ArrayLike:
  """The papers' bias variance sigma_b2 from gradlab's bias scale: sigma_b ** 2."""
  return np.square(sigma_b)


def scale_from_variance(variance: ArrayLike) -> ArrayLike:
  """The inverse of `sigma_w2_from_scale` (to draw a critical line on a sigma_w axis)."""
  return np.sqrt(variance)


# ----------------------------------------------------------------------------- activations


class MeanFieldActivation(NamedTuple):
  """phi and its analytic derivatives phi', phi'' (numpy, float64), and how they are got.

  Where phi' jumps (relu, selu at 0), phi'' holds only the smooth part: the delta at 0
  multiplies phi(0) = 0 in E[phi'' phi] and drops out.
  """

  phi: Fn
  dphi: Fn
  d2phi: Fn
  how: str


MEAN_FIELD_ACTIVATIONS: Registry[MeanFieldActivation] = Registry("mean-field activation")


def _pdf(x):
  return np.exp(-0.5 * x * x) / _SQRT_2PI


def _tanh_d1(x):
  return 1.0 - np.tanh(x) ** 2


def _sig_d1(x):
  return expit(x) * (1.0 - expit(x))


def _sig_d2(x):
  return _sig_d1(x) * (1.0 - 2.0 * expit(x))


def _selu_neg(x):  # SELU's x < 0 branch without its -1, lambda alpha e^x: also phi', phi''
  return _SELU_LAMBDA * _SELU_ALPHA * np.exp(np.minimum(x, 0.0))


_TABLE = {
  "linear": (lambda x: x, np.ones_like, np.zeros_like, "phi' = 1, phi'' = 0"),
  "tanh": (np.tanh, _tanh_d1, lambda x: -2.0 * np.tanh(x) * _tanh_d1(x),
           "phi' = 1 - tanh^2, phi'' = -2 tanh (1 - tanh^2)"),
  "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), np.zeros_like,
           "phi' = 1[x > 0], phi'' = 0 off the kink"),
  "erf": (erf, lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-x * x),
          lambda x: -4.0 * x / np.sqrt(np.pi) * np.exp(-x * x),
          "phi' = 2/sqrt(pi) exp(-x^2), phi'' = -2x phi'"),
  "gelu": (lambda x: x * ndtr(x), lambda x: ndtr(x) + x * _pdf(x),
           lambda x: (2.0 - x * x) * _pdf(x),
           "exact GELU x Phi(x): phi' = Phi + x pdf, phi'' = (2 - x^2) pdf"),
  "sigmoid": (expit, _sig_d1, _sig_d2, "phi' = s (1 - s), phi'' = s (1 - s)(1 - 2s)"),
  "selu": (lambda x: np.where(x > 0, _SELU_LAMBDA * x, _selu_neg(x) - _SELU_LAMBDA * _SELU_ALPHA),
           lambda x: np.where(x > 0, _SELU_LAMBDA, _selu_neg(x)),
           lambda x: np.where(x > 0, 0.0, _selu_neg(x)),
           "lambda x (x > 0), lambda alpha (e^x - 1) (x <= 0); phi'' = lambda alpha e^x, x < 0"),
  "softplus": (lambda x: np.logaddexp(0.0, x), expit, _sig_d1,
               "phi' = sigmoid, phi'' = sigmoid'"),
  "swish": (lambda x: x * expit(x), lambda x: expit(x) + x * _sig_d1(x),
            lambda x: 2.0 * _sig_d1(x) + x * _sig_d2(x),
            "x s(x): phi' = s + x s', phi'' = 2 s' + x s''"),
}
for _name, _entry in _TABLE.items():
  MEAN_FIELD_ACTIVATIONS.register(_name)(MeanFieldActivation(*_entry))


def _act(activation: str) -> MeanFieldActivation:
  return MEAN_FIELD_ACTIVATIONS.get(activation)


def gaussian_expectation(f: Fn, q: ArrayLike) -> np.ndarray:
  """E_z[f(sqrt(q) z)], z ~ N(0, 1), vectorized over q (panel rule, see the module doc)."""
  u = np.sqrt(np.minimum(np.asarray(q, float), Q_MAX))[..., None] * _Z1
  return f(u) @ _W1


def _polar_rule(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Nodes z1, z2 and weights (each (*c.shape, P)) for E over two iid N(0, 1), in polar
  coordinates split into the four sectors between the rays where u1 = 0 or u2 = 0."""
  theta0 = np.arccos(c)  # u2 = 0 on the rays theta0 +- pi/2; u1 = 0 on +-pi/2
  rays = np.sort(np.stack([np.full_like(c, 0.5 * np.pi), np.full_like(c, 1.5 * np.pi),
                           (theta0 + 0.5 * np.pi) % (2 * np.pi),
                           (theta0 + 1.5 * np.pi) % (2 * np.pi)], -1), -1)
  width = np.concatenate([rays[..., 1:], rays[..., :1] + 2.0 * np.pi], -1) - rays
  theta = (rays[..., None] + width[..., None] * _T_SECTOR).reshape(*c.shape, -1, 1)
  w_theta = (width[..., None] * _W_SECTOR / (2.0 * np.pi)).reshape(*c.shape, -1, 1)
  shape = (*c.shape, -1)
  return ((_R * np.cos(theta)).reshape(shape), (_R * np.sin(theta)).reshape(shape),
          (w_theta * _WR_POLAR).reshape(shape))


def _pair_expectation(f: Fn, g: Fn, q: ArrayLike, c: ArrayLike) -> np.ndarray:
  """E[f(u1) g(u2)] for u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2), z1, z2
  iid N(0, 1), vectorized over q and c."""
  q, c = np.broadcast_arrays(np.minimum(np.asarray(q, float), Q_MAX),
                             np.clip(np.asarray(c, float), -1.0, 1.0))
  z_a, z_b, w = _polar_rule(c)
  s, c = np.sqrt(q)[..., None], c[..., None]
  return np.sum(f(s * z_a) * g(s * (c * z_a + np.sqrt(1.0 - c * c) * z_b)) * w, -1)


# ----------------------------------------------------------------------------- length map


def length_map(activation: str, q: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike
               ) -> np.ndarray:
  """One step of the length map (Poole et al. 2016, sec. 2; Schoenholz et al. 2017, sec. 2):
  q^l = sigma_w2 E_z[phi(sqrt(q^{l-1}) z)^2] + sigma_b2, q the pre-activation second moment."""
  a = _act(activation)
  mean_phi2 = gaussian_expectation(lambda u: a.phi(u) ** 2, q)
  return np.asarray(sigma_w2) * mean_phi2 + sigma_b2


def _length_map_slope(a: MeanFieldActivation, q, sigma_w2) -> np.ndarray:
  """dq^l/dq^{l-1} = sigma_w2 E[phi'(u)^2 + phi''(u) phi(u)], u = sqrt(q) z (Stein's lemma)."""
  return sigma_w2 * gaussian_expectation(
    lambda u: a.dphi(u) ** 2 + a.d2phi(u) * a.phi(u), q)


def q_star(activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q0: float = 1.0,
           num_iters: int = 300, newton_steps: int = 100) -> np.ndarray:
  """The fixed point q* of the length map reached from q^0 = q0 (broadcast over inputs).

  Iterates the map `num_iters` times, then polishes with guarded Newton steps on
  q - length_map(q) (a step is kept only if it stays positive and shrinks the residual),
  which settles the slow, algebraic approach near the critical line. Returns inf where the
  map diverges (unbounded phi with sigma_w2 past the point where chi_1 >= 1, e.g. ReLU
  with sigma_w2 >= 2 and sigma_b2 > 0).
  """
  a = _act(activation)
  sw, sb = np.broadcast_arrays(np.asarray(sigma_w2, float), np.asarray(sigma_b2, float))
  q = np.full(sw.shape, float(q0))
  with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
    for _ in range(num_iters):
      q, q_old = np.minimum(length_map(activation, q, sw, sb), 10 * Q_MAX), q
      if np.all(np.abs(q - q_old) <= 1e-15 * q):
        break
    for _ in range(newton_steps):
      resid = length_map(activation, q, sw, sb) - q
      q_new = q + resid / (1.0 - _length_map_slope(a, q, sw))
      ok = (q_new > 0) & np.isfinite(q_new) & (q < Q_MAX)
      ok &= np.abs(length_map(activation, q_new, sw, sb) - q_new) < np.abs(resid)
      if not np.any(ok):
        break
      q = np.where(ok, q_new, q)
  return np.where(q >= Q_MAX, np.inf, q)


def chi_1(activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
          q: ArrayLike | None = None) -> np.ndarray:
  """chi_1 = sigma_w2 E_z[phi'(sqrt(q*) z)^2] (Poole et al. 2016, sec. 2; Schoenholz et al.
  2017, sec. 2): the slope of the correlation map at c = 1 and, by the mean-field
  backward pass (Schoenholz et al. 2017, sec. 5), the ratio of the mean squared gradient
  wrt layer l's pre-activations to that of layer l + 1. q defaults to q*; at q* = inf it
  is the q -> inf limit."""
  a = _act(activation)
  q = q_star(activation, sigma_w2, sigma_b2) if q is None else q
  return np.asarray(sigma_w2) * gaussian_expectation(lambda u: a.dphi(u) ** 2, q)


# ------------------------------------------------------------------------ correlation map


def correlation_map(activation: str, c: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                    q: ArrayLike | None = None) -> np.ndarray:
  """One step of the correlation map for two inputs of equal length q^{l-1} = q (default
  q*) (Poole et al. 2016, sec. 2; Schoenholz et al. 2017, sec. 2):
  c^l = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q^l, u1 = sqrt(q) z1,
  u2 = sqrt(q) (c^{l-1} z1 + sqrt(1 - (c^{l-1})^2) z2), z1, z2 iid N(0, 1), and
  q^l = length_map(q) (= q at q*)."""
  a = _act(activation)
  q = q_star(activation, sigma_w2, sigma_b2) if q is None else np.asarray(q, float)
  q_ab = np.asarray(sigma_w2) * _pair_expectation(a.phi, a.phi, q, c) + sigma_b2
  return q_ab / length_map(activation, q, sigma_w2, sigma_b2)


def mean_field_trajectory(activation: str, sigma_w2: float, sigma_b2: float, depth: int,
                          q_input: float = 1.0, c_input: float = 0.0
                          ) -> tuple[np.ndarray, np.ndarray]:
  """The mean-field q^l and c^l of hidden layers l = 0 .. depth - 1 of an MLP whose inputs
  have mean square `q_input` per feature and correlation `c_input` (Poole et al. 2016,
  sec. 2): layer 0 is linear in x, q^0 = sigma_w2 q_input + sigma_b2 and
  c^0 = (sigma_w2 q_input c_input + sigma_b2) / q^0; then the length and correlation maps.
  Compare with `gradlab.diagnostics.signal`'s measured q^l, c^l, layer by layer."""
  q = [sigma_w2 * q_input + sigma_b2]
  c = [(sigma_w2 * q_input * c_input + sigma_b2) / q[0]]
  for _ in range(depth - 1):
    c.append(float(correlation_map(activation, c[-1], sigma_w2, sigma_b2, q[-1])))
    q.append(float(length_map(activation, q[-1], sigma_w2, sigma_b2)))
  return np.asarray(q), np.asarray(c)


def _c_star_one(activation: str, sw: float, sb: float, q: float, chi: float) -> float:
  if not np.isfinite(q):
    return np.nan
  if chi <= 1.0:
    return 1.0  # order: c = 1 is the attracting fixed point
  g = lambda c: float(correlation_map(activation, c, sw, sb, q)) - c
  for delta in (1e-2, 1e-4, 1e-6, 1e-8):  # g < 0 just below 1 since the slope there is > 1
    if g(1.0 - delta) < 0:
      # g(0) >= 0: E[phi(u1) phi(u2)] = E[phi]^2 >= 0 at c = 0
      return _brentq(g, 0.0, 1.0 - delta, xtol=1e-13) if g(0.0) > 0 else 0.0
  return 1.0


def c_star(activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> np.ndarray:
  """The attracting fixed point c* of the correlation map: 1 in the ordered phase
  (chi_1 <= 1), the root of c = correlation_map(c) in [0, 1) in the chaotic phase; NaN
  where q* is infinite."""
  sw, sb = np.broadcast_arrays(np.asarray(sigma_w2, float), np.asarray(sigma_b2, float))
  q = q_star(activation, sw, sb)
  chi = chi_1(activation, sw, sb, q)
  out = [_c_star_one(activation, *v) for v in zip(sw.ravel(), sb.ravel(), q.ravel(),
                                                  chi.ravel(), strict=True)]
  return np.reshape(out, sw.shape)


def chi_c(activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> np.ndarray:
  """The slope of the correlation map at c*, sigma_w2 E[phi'(u1) phi'(u2)] (Schoenholz et
  al. 2017, sec. 3); equal to chi_1 where c* = 1."""
  a = _act(activation)
  sw, sb = np.broadcast_arrays(np.asarray(sigma_w2, float), np.asarray(sigma_b2, float))
  q = q_star(activation, sw, sb)
  c = c_star(activation, sw, sb)
  slope_at_1 = chi_1(activation, sw, sb, q)
  with np.errstate(invalid="ignore"):
    slope = sw * _pair_expectation(a.dphi, a.dphi, q, np.nan_to_num(c, nan=1.0))
  return np.where(np.isnan(c), np.nan, np.where(c >= 1.0, slope_at_1, slope))


def _depth_scale(slope: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(slope >= 1.0, np.inf, -1.0 / np.log(slope))


def xi_q(activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> np.ndarray:
  """The depth scale of q^l -> q*, |q^l - q*| ~ exp(-l / xi_q) (Schoenholz et al. 2017,
  sec. 3): xi_q^{-1} = -log(chi_1 + sigma_w2 E_z[phi''(sqrt(q*) z) phi(sqrt(q*) z)]),
  the log of the length map's slope at q*. inf where that slope is >= 1."""
  a = _act(activation)
  sw, sb = np.broadcast_arrays(np.asarray(sigma_w2, float), np.asarray(sigma_b2, float))
  q = q_star(activation, sw, sb)
  return np.where(np.isfinite(q), _depth_scale(_length_map_slope(a, q, sw)), np.nan)


def xi_c(activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> np.ndarray:
  """The depth scale of c^l -> c*, |c^l - c*| ~ exp(-l / xi_c) (Schoenholz et al. 2017,
  sec. 3): xi_c^{-1} = -log(sigma_w2 E[phi'(u1) phi'(u2)]) at c = c*, i.e. -log chi_1 in
  the ordered phase. Diverges (inf) on the critical line; NaN where q* = inf."""
  return _depth_scale(chi_c(activation, sigma_w2, sigma_b2))


def trainable_depth(activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> np.ndarray:
  """6 xi_c: Schoenholz et al. 2017 (sec. 6) find that random networks train when their
  depth is below about 6 xi_c."""
  return 6.0 * xi_c(activation, sigma_w2, sigma_b2)


def critical_sigma_w2(activation: str, sigma_b2: float, lo: float = 1e-2, hi: float = 1e3,
                      num_grid: int = 121) -> float:
  """The sigma_w2 where chi_1(sigma_w2, sigma_b2) = 1: the order-to-chaos line (Poole et
  al. 2016, sec. 2; Schoenholz et al. 2017, sec. 2).

  Scans a log grid of sigma_w2 in [lo, hi] for the first change of sign of chi_1 - 1 from
  below to above and refines it with Brent's method (xtol 1e-12). NaN if chi_1 never
  crosses 1 on the grid.
  """
  f = lambda sw: chi_1(activation, sw, sigma_b2) - 1.0
  grid = np.geomspace(lo, hi, num_grid)
  vals = f(grid)
  cross = np.nonzero((vals[:-1] < 0) & (vals[1:] >= 0))[0]
  if cross.size == 0:
    return float("nan")
  i = int(cross[0])
  if vals[i + 1] == 0:
    return float(grid[i + 1])
  return float(_brentq(lambda sw: float(f(sw)), grid[i], grid[i + 1], xtol=1e-12, rtol=1e-14))


def critical_line(activation: str, sigma_b2_values: ArrayLike) -> np.ndarray:
  """critical_sigma_w2 for each sigma_b2 (same shape): the line to draw over a regime map
  (convert with `scale_from_variance` for a sigma_w axis)."""
  b = np.asarray(sigma_b2_values, float)
  return np.reshape([critical_sigma_w2(activation, float(v)) for v in b.ravel()], b.shape)
