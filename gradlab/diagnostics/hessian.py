"""Curvature of the loss: Hessian-vector products, sharpness, spectral density.

Everything is jittable with static (maximum) iteration counts and takes explicit PRNG keys, so it
can run inside `lax.scan` (e.g. every k-th training step) and under `vmap` over lanes.

- `hvp`: H v by forward-over-reverse differentiation, jvp of grad (Pearlmutter 1994,
  "Fast exact multiplication by the Hessian").
- `top_hessian_eigenvalue`: the sharpness lambda_max(H) by power iteration (Cohen et al.
  2021, "Gradient descent on neural networks typically occurs at the edge of stability").
- `preconditioned_sharpness`: lambda_max(P^{-1/2} H P^{-1/2}) = lambda_max(P^{-1} H) for
  Adam's diagonal preconditioner P (Cohen et al. 2022, "Adaptive gradient methods at the
  edge of stability"); `adam_preconditioner` builds P from Adam's state.
- `power_iterate`: power iteration to a relative tolerance (``diagnostics.power_tol``),
  with the iterations used and whether it converged (`PowerResult`).
- `top_eigenvalue`: the most positive eigenvalue (a shifted second pass when power
  iteration lands on a negative one); `sharpness`: what the training scan records every
  `diagnostics.every` steps (and at step 0), that and the preconditioned value for
  Adam chains, each with its iterations and convergence flag (`Sharpness`).
- `update_ratio_by_layer`: ||update_l|| / ||params_l|| per layer.
- `lanczos`, `ritz`, `hessian_slq`, `spectral_density`: the Hessian eigenvalue density by
  stochastic Lanczos quadrature (Ghorbani, Krishnan and Xiao 2019, "An investigation into
  neural net optimization via Hessian eigenvalue density", sec. 2 and appendix).

Compare sharpnesses with `gradlab.theory.sharpness_threshold`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

Params = Any
LossFn = Callable[[Params], jax.Array]
MatVec = Callable[[Params], Params]


def hvp(loss_fn: LossFn, params: Params, v: Params) -> Params:
  """H v, H the Hessian of loss_fn at params: jax.jvp of jax.grad (forward-over-reverse)."""
  return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def _tree_dot(a: Params, b: Params) -> jax.Array:
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                           jax.tree_util.tree_leaves(b), strict=True))


def _tree_scale(tree: Params, s: jax.Array) -> Params:
  return jax.tree_util.tree_map(lambda x: x * s, tree)


def random_like(key: jax.Array, tree: Params) -> Params:
  """A standard-normal pytree shaped like `tree`."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([jax.random.normal(k, x.shape, x.dtype)
                            for k, x in zip(keys, leaves, strict=True)])


def power_iteration(matvec: MatVec, like: Params, key: jax.Array, num_iters: int = 20
                    ) -> tuple[jax.Array, Params]:
  """(eigenvalue, unit eigenvector) of the symmetric operator `matvec` by `num_iters`
  power iterations from a random start; the eigenvalue is the Rayleigh quotient v^T A v.

  Converges to the eigenvalue of LARGEST MAGNITUDE at rate |lambda_2 / lambda_1| per
  iteration; for a Hessian that is the sharpness whenever lambda_max > |lambda_min|.
  `power_iterate` stops at a tolerance and says whether it converged.
  """
  v = random_like(key, like)
  v = _tree_scale(v, 1.0 / optax.global_norm(v))

  def body(_, v):
    w = matvec(v)
    return _tree_scale(w, 1.0 / jnp.maximum(optax.global_norm(w), 1e-30))

  v = jax.lax.fori_loop(0, num_iters, body, v)
  return _tree_dot(v, matvec(v)), v


class PowerResult(NamedTuple):
  """An eigenvalue estimate of `power_iterate`: the Rayleigh quotient `value`, its unit
  `vector`, `iters` (operator applications used, int32) and `converged` (bool: the
  relative change of the estimate fell to the tolerance before the maximum)."""

  value: jax.Array
  vector: Params
  iters: jax.Array
  converged: jax.Array


def power_iterate(matvec: MatVec, like: Params, key: jax.Array, max_iters: int, tol: float,
                  active: jax.Array | bool = True) -> PowerResult:
  """Power iteration to a tolerance: iterate v <- A v / ||A v|| and the Rayleigh quotient
  lam_k = v_k^T A v_k until the residual ||A v_k - lam_k v_k|| < tol |lam_k| or
  `max_iters` operator applications (a `lax.while_loop`, so under `vmap` each lane keeps
  the iteration where it stopped). A residual r puts an eigenvalue of A within r of lam
  (Krylov-Weinstein; Parlett 1998, "The symmetric eigenvalue problem", thm 4.5.1), and
  within r^2 / gap (Kato-Temple), so a converged estimate is within tol |lam| of an
  eigenvalue. Not the relative change of lam between iterations: on a deep chaotic net
  at init the Rayleigh quotient creeps (it changed by < 1e-3 per step at -0.03 while the
  top eigenvalue was 1.8e3). tol = 0 runs all `max_iters` and reports not converged.
  With `active` False nothing iterates (iters 0): `top_eigenvalue`'s optional pass."""
  v = random_like(key, like)
  v = _tree_scale(v, 1.0 / optax.global_norm(v))
  w = matvec(v)
  lam = _tree_dot(v, w)
  nan = jnp.array(jnp.nan, lam.dtype)
  small = lambda v, w, lam: optax.global_norm(
    jax.tree_util.tree_map(lambda a, b: a - lam * b, w, v)) < tol * jnp.abs(lam)

  def cond(c):
    k, _, _, _, done = c
    return (k < max_iters) & ~done & active

  def body(c):
    k, _, w, lam, _ = c
    v = _tree_scale(w, 1.0 / jnp.maximum(optax.global_norm(w), 1e-30))
    w = matvec(v)
    lam = _tree_dot(v, w)
    return k + 1, v, w, lam, small(v, w, lam)

  init = (jnp.array(1, jnp.int32), v, w, lam, small(v, w, lam))
  k, v, _, lam, done = jax.lax.while_loop(cond, body, init)
  on = jnp.asarray(active)
  return PowerResult(jnp.where(on, lam, nan), v, jnp.where(on, k, 0), done & on)


def top_hessian_eigenvalue(loss_fn: LossFn, params: Params, key: jax.Array,
                           num_iters: int = 20) -> tuple[jax.Array, Params]:
  """The sharpness lambda_max(H) of loss_fn at params and its eigenvector (power iteration)."""
  return power_iteration(lambda v: hvp(loss_fn, params, v), params, key, num_iters)


def adam_preconditioner(nu: Params, count: jax.Array, b2: float, eps: float,
                        b1: float | None = None) -> Params:
  """Adam's diagonal preconditioner P = sqrt(nu_hat) + eps, nu_hat = nu / (1 - b2^count)
  (Kingma and Ba 2015, alg. 1), with nu and count from ``optax.ScaleByAdamState``.

  Cohen et al. 2022 (sec. 2) write Adam as preconditioned heavy-ball momentum with
  P_t = (1 - b1^{t+1}) (sqrt(nu_hat_t) + eps), the factor absorbing the first-moment bias
  correction; pass `b1` to include it (it tends to 1 after a few dozen steps).
  """
  count = jnp.maximum(jnp.asarray(count, jnp.float32), 1.0)
  scale = 1.0 - b1 ** (count + 1.0) if b1 is not None else 1.0
  correction = 1.0 - b2 ** count
  return jax.tree_util.tree_map(lambda n: scale * (jnp.sqrt(n / correction) + eps), nu)


def find_adam_state(opt_state: Any) -> optax.ScaleByAdamState:
  """The first ``optax.ScaleByAdamState`` inside an optimizer state (chains and
  ``inject_hyperparams`` wrappers included); ValueError if there is none."""
  is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
  for leaf in jax.tree_util.tree_leaves(opt_state, is_leaf=is_adam):
    if is_adam(leaf):
      return leaf
  raise ValueError("the optimizer state holds no optax.ScaleByAdamState (not an Adam chain)")


def preconditioned_sharpness(loss_fn: LossFn, params: Params, preconditioner: Params,
                             key: jax.Array, num_iters: int = 20) -> tuple[jax.Array, Params]:
  """lambda_max(P^{-1/2} H P^{-1/2}) (= lambda_max(P^{-1} H)) for a diagonal preconditioner
  P given as a pytree like params (e.g. `adam_preconditioner`); Cohen et al. 2022 find
  it equilibrates at `gradlab.theory.sharpness_threshold('adam', lr, b1)`."""
  inv_sqrt = jax.tree_util.tree_map(jax.lax.rsqrt, preconditioner)
  mul = lambda a, b: jax.tree_util.tree_map(jnp.multiply, a, b)
  matvec = lambda v: mul(inv_sqrt, hvp(loss_fn, params, mul(inv_sqrt, v)))
  return power_iteration(matvec, params, key, num_iters)


def has_adam_state(opt_state: Any) -> bool:
  """Whether `opt_state` holds an ``optax.ScaleByAdamState`` (an Adam-family chain)."""
  try:
    find_adam_state(opt_state)
  except ValueError:
    return False
  return True


def top_eigenvalue(matvec: MatVec, like: Params, key: jax.Array, max_iters: int,
                   tol: float = 0.0) -> PowerResult:
  """The largest (most positive) eigenvalue by `power_iterate`. Power iteration finds
  the largest in MAGNITUDE, lam1; when lam1 < 0 a second pass on (H - lam1 I), whose
  largest-magnitude eigenvalue is lambda_max - lam1 >= 0, recovers lambda_max (and its
  iterations are added; `converged` is that of the pass whose value is returned)."""
  first = power_iterate(matvec, like, key, max_iters, tol)
  lam1 = first.value
  shifted = lambda v: jax.tree_util.tree_map(lambda a, b: a - lam1 * b, matvec(v), v)
  second = power_iterate(shifted, like, jax.random.fold_in(key, 1), max_iters, tol,
                         active=lam1 < 0)
  positive = lam1 >= 0
  return PowerResult(jnp.where(positive, lam1, second.value + lam1),
                     jax.tree_util.tree_map(lambda a, b: jnp.where(positive, a, b),
                                            first.vector, second.vector),
                     first.iters + second.iters,
                     jnp.where(positive, first.converged, second.converged))


class Sharpness(NamedTuple):
  """What `sharpness` measures: the top Hessian eigenvalue and, for Adam's chains, the
  preconditioned one (NaN otherwise), each with its iterations and convergence flag."""

  value: jax.Array
  iters: jax.Array
  converged: jax.Array
  preconditioned: jax.Array
  preconditioned_iters: jax.Array
  preconditioned_converged: jax.Array


def sharpness(loss_fn: LossFn, params: Params, opt_state: Any, key: jax.Array,
              max_iters: int, eps: jax.Array, b2: jax.Array, b1: jax.Array | None = None,
              tol: float = 0.0, adam: bool | None = None) -> Sharpness:
  """lambda_max(H) of `loss_fn` at `params` by `top_eigenvalue` (Cohen et al. 2021) and,
  for an Adam chain (`adam`: the chain's state is Adam's second moment; None: whether
  `opt_state` holds a ScaleByAdamState), the preconditioned sharpness
  lambda_max(P^-1/2 H P^-1/2) of Cohen et al. 2022 (sec. 2) with
  P = (1 - b1^(t+1)) (sqrt(nu_hat) + eps) (`adam_preconditioner`; without `b1` the
  factor is left out). Before Adam's first step nu = 0: P is the preconditioner that step
  will use, nu_hat = g^2 (P = (1 - b1) (|g| + eps)), so the init-time value is defined.
  Each estimate stops at relative change `tol` or `max_iters` (`power_iterate`)."""
  top = top_eigenvalue(lambda v: hvp(loss_fn, params, v), params, key, max_iters, tol)
  adam = has_adam_state(opt_state) if adam is None else adam
  if not adam:
    nan = jnp.array(jnp.nan, jnp.float32)
    return Sharpness(top.value, top.iters, top.converged, nan, jnp.array(0, jnp.int32),
                     jnp.array(False))
  state = find_adam_state(opt_state)
  g = jax.grad(loss_fn)(params)
  first_scale = 1.0 - b1 if b1 is not None else 1.0
  pre = jax.tree_util.tree_map(
    lambda p_, g_: jnp.where(state.count == 0, first_scale * (jnp.abs(g_) + eps), p_),
    adam_preconditioner(state.nu, state.count, b2, eps, b1), g)
  inv_sqrt = jax.tree_util.tree_map(jax.lax.rsqrt, pre)
  mul = lambda a, c: jax.tree_util.tree_map(jnp.multiply, a, c)
  pre_top = top_eigenvalue(lambda v: mul(inv_sqrt, hvp(loss_fn, params, mul(inv_sqrt, v))),
                           params, key, max_iters, tol)
  return Sharpness(top.value, top.iters, top.converged, pre_top.value, pre_top.iters,
                   pre_top.converged)


def update_ratio_by_layer(updates: Params, params: Params, layer_names: Sequence[str]
                          ) -> jax.Array:
  """||updates[l]|| / ||params[l]|| per named top-level layer, shape (L,)."""
  return jnp.stack([optax.global_norm(updates[n]) / optax.global_norm(params[n])
                    for n in layer_names])


# ------------------------------------------------------------------ stochastic Lanczos


def lanczos(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, num_steps: int
            ) -> tuple[jax.Array, jax.Array]:
  """`num_steps` Lanczos steps with full reorthogonalization (twice per step) from v0:
  the tridiagonal's diagonal alphas (m,) and off-diagonal betas (m - 1,).

  Keeps all m basis vectors (m x n memory): meant for m up to a few hundred. After an
  invariant subspace is exhausted (beta ~ 0) the next vector is set to 0, which decouples
  the tridiagonal; the extra Ritz values then get zero weight in `ritz`.
  """
  n = v0.shape[0]
  basis = jnp.zeros((num_steps, n), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
  tiny = 10.0 * jnp.finfo(v0.dtype).eps

  def step(j, carry):
    basis, alphas, betas = carry
    v = basis[j]
    w = matvec(v)
    alpha = jnp.vdot(w, v)
    for _ in range(2):  # rows > j are zero, so this projects out v_0 .. v_j
      w = w - basis.T @ (basis @ w)
    beta = jnp.linalg.norm(w)
    beta = jnp.where(beta > tiny * jnp.maximum(jnp.abs(alpha), 1.0), beta, 0.0)
    v_next = jnp.where(beta > 0, w / jnp.where(beta > 0, beta, 1.0), 0.0)
    last = num_steps - 1  # the last step's v_next is not needed: keep the row as is
    basis = basis.at[jnp.minimum(j + 1, last)].set(
      jnp.where(j < last, v_next, basis[last]))
    return basis, alphas.at[j].set(alpha), betas.at[j].set(beta)

  alphas = jnp.zeros((num_steps,), v0.dtype)
  betas = jnp.zeros((num_steps,), v0.dtype)
  _, alphas, betas = jax.lax.fori_loop(0, num_steps, step, (basis, alphas, betas))
  return alphas, betas[:-1]


def ritz(alphas: jax.Array, betas: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Ritz values (ascending) and quadrature weights of a Lanczos tridiagonal: the weights
  are the squared first components of its eigenvectors (Golub and Welsch 1969), so they
  sum to 1 and sum_i w_i delta(t - theta_i) approximates the spectral density seen from
  the start vector."""
  tri = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
  values, vectors = jnp.linalg.eigh(tri)
  return values, vectors[0] ** 2


def hessian_slq(loss_fn: LossFn, params: Params, key: jax.Array, num_probes: int = 4,
                num_steps: int = 64) -> tuple[jax.Array, jax.Array]:
  """Stochastic Lanczos quadrature of the Hessian (Ghorbani et al. 2019, sec. 2): for
  each of `num_probes` Gaussian start vectors, `num_steps` Lanczos steps; returns Ritz
  values and weights, each (num_probes, num_steps). The extremes of the Ritz values
  approach lambda_min and lambda_max fast; `spectral_density` turns them into a density."""
  flat, unravel = ravel_pytree(params)
  matvec = lambda v: ravel_pytree(hvp(loss_fn, params, unravel(v)))[0]
  probes = jax.random.normal(key, (num_probes, flat.shape[0]), flat.dtype)
  return jax.vmap(lambda v0: ritz(*lanczos(matvec, v0, num_steps)))(probes)


def spectral_density(ritz_values: jax.Array, weights: jax.Array, grid: jax.Array,
                     sigma: float) -> jax.Array:
  """The density on `grid` (G,) by Gaussian broadening of width sigma (Ghorbani et al.
  2019, sec. 2): phi(t) = mean over probes of sum_i w_i N(t; theta_i, sigma^2). Integrates
  to about 1 when the grid covers the spectrum with margin."""
  diff = grid[:, None, None] - ritz_values[None]
  kernel = jnp.exp(-0.5 * (diff / sigma) ** 2) / (sigma * jnp.sqrt(2.0 * jnp.pi))
  return jnp.mean(jnp.sum(kernel * weights[None], -1), -1)
