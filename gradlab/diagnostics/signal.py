"""Signal propagation in an MLP at initialization, measured (compare with `gradlab.theory`).

Works on the params dict of `gradlab.models.mlp.MLP` (``{'dense_0': {'kernel', 'bias'},
..., 'readout': ...}``, optional ``'norm_i'`` LayerNorm entries, biases optional) by
re-running its forward pass here (`mlp_forward`), so the pre-activations h^l (the output
of ``dense_l``, before any LayerNorm and the activation) are available; a test holds that
`mlp_forward` equals ``MLP.apply``.

Quantities, per hidden layer l = 0 .. depth - 1 (shape (depth,)):
- q^l: mean over units and examples of (h^l)^2 (theory: the length map -> q*).
- c^l: the correlation of the pre-activations of paired inputs, mean(h_a h_b) /
  sqrt(mean(h_a^2) mean(h_b^2)) (theory: the correlation map -> c*).
- g^l: mean over units and examples of (dL/dh^l)^2, the squared gradient wrt the
  PRE-ACTIVATIONS for L = loss_fn(outputs) summed over examples. This is the quantity of
  the mean-field backward pass (Schoenholz et al. 2017, sec. 5): dL/dh^l =
  phi'(h^l) * (W^{l+1})^T dL/dh^{l+1}, so g^l / g^{l+1} = sigma_w2 mean(phi'(h^l)^2)
  (N_{l+1} / N_l), which is chi_1 once q^l has settled to q* (equal widths). That ratio is
  `empirical_chi_1`, the chosen estimator. Kernel-gradient norms (what `gradlab.probes`
  records per layer) are worse: for ONE example ||dL/dW^l||^2 = g^l N ||phi(h^{l-1})||^2,
  so their squared ratio also settles to chi_1 (width-1024 tanh, 20 layers: within 1.5%),
  but a batch adds the examples' cross terms, which change with depth (batch 16: 0.85 vs
  chi_1 = 0.94 at sigma_w2 = 1.5, 1.01 vs 1.13 at sigma_w2 = 2.5; sigma_b2 = 0.05).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab.models.activations import ACTIVATIONS
from gradlab.models.orthogonal import qr

Params = Any
LN_EPSILON = 1e-6  # flax.linen.LayerNorm's default


def num_hidden_layers(params: Params) -> int:
  """The number of ``dense_i`` layers in an MLP params dict."""
  return sum(1 for k in params if k.startswith("dense_"))


def _dense(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  y = x @ p["kernel"]
  return y + p["bias"] if "bias" in p else y


def _layer_norm(p: dict[str, jax.Array], h: jax.Array) -> jax.Array:
  mean = jnp.mean(h, -1, keepdims=True)
  var = jnp.maximum(jnp.mean(h * h, -1, keepdims=True) - mean * mean, 0.0)
  y = (h - mean) * jax.lax.rsqrt(var + LN_EPSILON)
  y = y * p["scale"] if "scale" in p else y
  return y + p["bias"] if "bias" in p else y


def mlp_forward(params: Params, activation: str, x_BxF: jax.Array,
                taps: Sequence[jax.Array] | None = None) -> tuple[jax.Array, list[jax.Array]]:
  """The MLP's outputs (B, K) and its pre-activations [h^0, ..., h^{depth-1}] (each (B, N)).

  `taps` (optional, one per hidden layer, broadcastable to h^l) are ADDED to the
  pre-activations; differentiating wrt zero taps gives dL/dh^l.
  """
  act = ACTIVATIONS.get(activation)
  h = x_BxF.reshape(x_BxF.shape[0], -1)
  pre = []
  for i in range(num_hidden_layers(params)):
    z = _dense(params[f"dense_{i}"], h)
    if taps is not None:
      z = z + taps[i]
    pre.append(z)
    if f"norm_{i}" in params:
      z = _layer_norm(params[f"norm_{i}"], z)
    h = act(z)
  return _dense(params["readout"], h), pre


def preactivations(params: Params, activation: str, x_BxF: jax.Array) -> list[jax.Array]:
  """[h^0, ..., h^{depth-1}], each (B, N): the outputs of the dense_i layers."""
  return mlp_forward(params, activation, x_BxF)[1]


def preactivation_second_moments(params: Params, activation: str, x_BxF: jax.Array
                                 ) -> jax.Array:
  """q^l = mean over units and examples of (h^l)^2, shape (depth,)."""
  return jnp.stack([jnp.mean(h * h) for h in preactivations(params, activation, x_BxF)])


def preactivation_correlations(params: Params, activation: str, xa_BxF: jax.Array,
                               xb_BxF: jax.Array) -> jax.Array:
  """c^l between the pre-activations of xa[i] and xb[i], pooled over i: shape (depth,)."""
  ha = preactivations(params, activation, xa_BxF)
  hb = preactivations(params, activation, xb_BxF)
  return jnp.stack([jnp.mean(a * b) / jnp.sqrt(jnp.mean(a * a) * jnp.mean(b * b))
                    for a, b in zip(ha, hb, strict=True)])


def preactivation_grad_moments(params: Params, activation: str, x_BxF: jax.Array,
                               loss_fn: Callable[[jax.Array], jax.Array] = jnp.sum
                               ) -> jax.Array:
  """g^l = mean over units and examples of (dL/dh^l)^2 with L = loss_fn(outputs_BxK)
  (default: the sum of the outputs, so every example backpropagates a fixed random
  readout direction), shape (depth,)."""
  shapes = jax.eval_shape(lambda: mlp_forward(params, activation, x_BxF)[1])
  taps = [jnp.zeros(h.shape, h.dtype) for h in shapes]
  grads = jax.grad(lambda t: loss_fn(mlp_forward(params, activation, x_BxF, t)[0]))(taps)
  return jnp.stack([jnp.mean(g * g) for g in grads])


def empirical_chi_1(grad_moments: jax.Array) -> jax.Array:
  """g^l / g^{l+1} for l = 0 .. depth - 2: each layer's estimate of chi_1 (equal widths)."""
  return grad_moments[:-1] / grad_moments[1:]


def preactivation_finite(params: Params, activation: str, x_BxF: jax.Array) -> jax.Array:
  """Per hidden layer, whether every pre-activation is finite: bool (depth,). Feed a
  (steps, depth) stack of these to `gradlab.diagnostics.onset.first_nonfinite`."""
  return jnp.stack([jnp.all(jnp.isfinite(h)) for h in preactivations(params, activation,
                                                                     x_BxF)])


class SignalStats(NamedTuple):
  """What `signal_stats` returns; per-layer fields have one entry per hidden layer."""

  q: jax.Array            # (depth,) pre-activation second moment q^l
  c: jax.Array            # (depth,) pre-activation correlation c^l of paired inputs
  grad_sq: jax.Array      # (depth,) mean squared dL/dh^l
  chi_1: jax.Array        # (depth - 1,) grad_sq[l] / grad_sq[l + 1]


def signal_stats(params: Params, activation: str, x_BxF: jax.Array,
                 xb_BxF: jax.Array | None = None,
                 loss_fn: Callable[[jax.Array], jax.Array] = jnp.sum) -> SignalStats:
  """All per-layer signal statistics at once. c pairs x[i] with xb[i]; without xb, each
  example with the next one (x[i], x[i+1 mod B]), i.e. distinct inputs."""
  xb_BxF = jnp.roll(x_BxF, 1, axis=0) if xb_BxF is None else xb_BxF
  g = preactivation_grad_moments(params, activation, x_BxF, loss_fn)
  return SignalStats(q=preactivation_second_moments(params, activation, x_BxF),
                     c=preactivation_correlations(params, activation, x_BxF, xb_BxF),
                     grad_sq=g, chi_1=empirical_chi_1(g))


# ------------------------------------------------------------------------------ Jacobian


def _network_fn(params: Params, activation: str, to: str) -> Callable[[jax.Array], jax.Array]:
  if to not in ("readout", "hidden"):
    raise ValueError(f"unknown Jacobian target '{to}'; known: hidden, readout")

  def fn(x_F: jax.Array) -> jax.Array:
    out, pre = mlp_forward(params, activation, x_F[None])
    return (out if to == "readout" else pre[-1])[0]

  return fn


def jacobian_singular_values(params: Params, activation: str, x_F: jax.Array,
                             key: jax.Array | None = None, to: str = "readout",
                             method: str = "auto", num_values: int = 32,
                             num_power_iters: int = 4, oversample: int = 8,
                             exact_max_entries: int = 2**22) -> jax.Array:
  """Singular values, descending, of the Jacobian of the network at ONE input x (F,).

  `to`: "readout" (the outputs, a K x F Jacobian) or "hidden" (the last hidden
  pre-activation h^{depth-1}, N x F: the Jacobian of dynamical isometry, Pennington et
  al. 2017, "Resurrecting the sigmoid in deep learning through dynamical isometry").

  `method`: "exact" builds the whole Jacobian (jax.jacfwd when F <= outputs, else
  jax.jacrev) and returns all min(F, outputs) singular values; "randomized" returns the
  top `num_values` by a randomized SVD (Halko, Martinsson and Tropp 2011, alg. 4.4):
  `num_values + oversample` random probe directions pushed through J by jvp, refined by
  `num_power_iters` rounds of J J^T (vjp then jvp) with re-orthonormalization, then the
  exact SVD of the small projected matrix. "auto" is exact while F * outputs <=
  `exact_max_entries`, else randomized (needs `key`). The QRs are
  `gradlab.models.orthogonal.qr` (``jnp.linalg.qr``'s numbers, no batched LAPACK QR when
  this function is vmapped, which can hang on CPU; not reverse-differentiable).
  """
  fn = _network_fn(params, activation, to)
  out_dim = jax.eval_shape(fn, x_F).shape[0]
  in_dim = x_F.shape[0]
  if method == "auto":
    method = "exact" if in_dim * out_dim <= exact_max_entries else "randomized"
  if method == "exact":
    jac = (jax.jacfwd if in_dim <= out_dim else jax.jacrev)(fn)(x_F)
    return jnp.linalg.svd(jac, compute_uv=False)
  if method != "randomized":
    raise ValueError(f"unknown method '{method}'; known: auto, exact, randomized")
  if key is None:
    raise ValueError("method 'randomized' needs a PRNG key")
  k = min(num_values + oversample, in_dim, out_dim)
  _, jvp_fn = jax.linearize(fn, x_F)
  _, vjp_fn = jax.vjp(fn, x_F)
  j_cols = jax.vmap(jvp_fn, in_axes=1, out_axes=1)         # (F, k) -> (out, k)
  jt_cols = jax.vmap(lambda u: vjp_fn(u)[0], in_axes=1, out_axes=1)  # (out, k) -> (F, k)
  q_mat, _ = qr(j_cols(jax.random.normal(key, (in_dim, k), x_F.dtype)))
  for _ in range(num_power_iters):
    w, _ = qr(jt_cols(q_mat))
    q_mat, _ = qr(j_cols(w))
  b_t = jt_cols(q_mat)                                     # (F, k) = (Q^T J)^T
  return jnp.linalg.svd(b_t, compute_uv=False)[:num_values]
