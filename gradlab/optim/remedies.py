"""Gradient remedies as chain stages: clipping family and decoupled weight decay, and
the registry of remedies by name (`REMEDIES`) with their config keys.

Each stage is a pure optax (init, update) pair whose threshold may be a traced scalar
(it is closed over, so the stage must be built inside the traced function, which
`gradlab.optim.build_optimizer` does). The clipping stages hold no state (EmptyState)
and go BEFORE the base optimizer; `decoupled_weight_decay` goes AFTER it.

Remedies (`REMEDIES`; name: kind, hp keys read):

- ``global_norm``: pre, ``clip`` -- global-norm clipping (Pascanu et al. 2013)
- ``value``: pre, ``clip_value`` -- per-entry value clipping
- ``agc``: pre, ``agc_clip`` -- unit-wise adaptive clipping (Brock et al. 2021), eps 1e-3
- ``layer_norm``: pre, ``layer_clip`` -- each top-level layer clipped to its own norm
- ``weight_decay``: post, ``weight_decay`` (and the scheduled lr) -- decoupled decay;
  for optimizers without their own (sgd, momentum, adam, ...): adamw & co. would decay twice
- ``loss_spike``: guard, ``spike_factor``, ``spike_decay`` -- needs ``value=loss``
- ``loss_scale``: guard, ``loss_scale_init``, ``loss_scale_period`` -- dynamic loss
  scaling for ``train.precision = 'float16'`` (`gradlab.precision`)
- ``skip_nonfinite``: guard (always outermost), no key

The config names them in ``optimizer.remedies`` ('+'-separated, e.g.
'agc+skip_nonfinite'; '' or 'none' for none); their thresholds are the traced numbers
of `REMEDY_HPARAMS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradlab.config import register_keys
from gradlab.optim import guards
from gradlab.optim.registry import inject
from gradlab.registry import Registry

# Every traced key the remedy stages read, with its documented default.
REMEDY_HPARAMS: dict[str, float] = {
  "clip": 1.0,             # global-norm threshold
  "clip_value": 1.0,       # per-entry value threshold
  "agc_clip": 0.01,        # adaptive gradient clipping lambda
  "layer_clip": 1.0,       # per-layer norm threshold
  "spike_factor": 2.0,     # loss-spike skip: loss > factor * running mean
  "spike_decay": 0.99,     # loss-spike skip: EMA rate of the running mean
  "loss_scale_init": 32768.0,   # dynamic loss scale: the first scale (2^15, as jmp)
  "loss_scale_period": 2000.0,  # ... doubled after this many finite steps (as jmp)
}
# In the config ``clip`` is 0: a positive value switches the global-norm stage on.
register_keys(
  "optimizer", {"remedies": "", **REMEDY_HPARAMS, "clip": 0.0}, family="remedies",
  traced=tuple(REMEDY_HPARAMS), switches=("clip",),
  positive=("clip_value", "agc_clip", "layer_clip", "spike_factor", "loss_scale_init",
            "loss_scale_period"), non_negative=("clip",),
  unit_interval=("spike_decay",))


def _scale_to_norm(tree: Any, norm: jax.Array, max_norm: Any) -> Any:
  """tree * min(1, max_norm / norm): leaves a norm <= max_norm as it is."""
  over = norm > max_norm
  scale = jnp.where(over, max_norm / jnp.where(over, norm, 1.0), 1.0)
  return jax.tree.map(lambda g: (g * scale).astype(g.dtype), tree)


def clip_by_global_norm(max_norm: Any) -> optax.GradientTransformation:
  """Global-norm clipping (Pascanu, Mikolov and Bengio 2013, "On the difficulty of
  training recurrent neural networks", Algorithm 1): g <- g * min(1, c / ||g||), with
  ||g|| the L2 norm over every leaf, so the new norm is exactly min(||g||, c).
  State: none."""

  def update_fn(updates, state, params=None):
    del params
    return _scale_to_norm(updates, optax.global_norm(updates), max_norm), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def clip_by_value(max_value: Any) -> optax.GradientTransformation:
  """Value clipping: every gradient entry clipped to [-c, c] (Mikolov 2012, thesis
  Section 3.2.2; Pascanu et al. 2013 Section 3.2). State: none."""

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: jnp.clip(g, -max_value, max_value), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def unitwise_norm(x: jax.Array) -> jax.Array:
  """The L2 norm of each unit of `x`, broadcastable against `x` (Brock et al. 2021).

  A unit is an output unit: vectors and scalars are one unit; a 2-D (fan_in, fan_out)
  kernel or 3-D multi-head kernel has units along its last axes, normed over axis 0;
  a conv kernel (H, W, ..., fan_in, fan_out) is normed over every axis but the last.
  """
  if x.ndim <= 1:
    return jnp.sqrt(jnp.sum(jnp.square(x)))
  axes = (0,) if x.ndim <= 3 else tuple(range(x.ndim - 1))
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True))


def adaptive_clip(clip: Any, eps: float = 1e-3) -> optax.GradientTransformation:
  """Adaptive gradient clipping, unit-wise (Brock, De, Smith and Simonyan 2021,
  "High-performance large-scale image recognition without normalization", eq. 2-3):
  for each unit i of each parameter W with gradient G,
      G_i <- lambda * (||W_i||* / ||G_i||) * G_i   if ||G_i|| / ||W_i||* > lambda,
  with ||W_i||* = max(||W_i||, eps) (eps = 1e-3 in the paper) and lambda = `clip`.
  Needs ``params`` in ``update``. State: none."""

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("adaptive_clip needs params: call update(grads, state, params)")

    def clip_leaf(g, p):
      max_norm = clip * jnp.maximum(unitwise_norm(p), eps)
      g_norm = unitwise_norm(g)
      clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6))
      return jnp.where(g_norm > max_norm, clipped, g).astype(g.dtype)

    return jax.tree.map(clip_leaf, updates, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def clip_by_layer_norm(max_norm: Any) -> optax.GradientTransformation:
  """Per-layer norm clipping: the gradient of each top-level entry of the parameter
  dict (a layer, e.g. 'dense_0' with its kernel and bias) is rescaled on its own to
  norm min(||g_layer||, c) (the layer-wise variant of Pascanu et al. 2013's rule). A
  pytree that is not a mapping is one layer. State: none."""

  def update_fn(updates, state, params=None):
    del params
    if not isinstance(updates, Mapping):
      return _scale_to_norm(updates, optax.global_norm(updates), max_norm), state
    out = {k: _scale_to_norm(v, optax.global_norm(v), max_norm) for k, v in updates.items()}
    if not isinstance(updates, dict):  # e.g. a flax FrozenDict
      out = type(updates)(out)
    return out, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def _decayed_weights(learning_rate: Any, weight_decay: Any) -> optax.GradientTransformation:
  return optax.add_decayed_weights(-learning_rate * weight_decay)


def decoupled_weight_decay(learning_rate: Any, weight_decay: Any
                           ) -> optax.GradientTransformationExtraArgs:
  """Decoupled weight decay (Loshchilov and Hutter 2019, "Decoupled weight decay
  regularization", Algorithm 2 line 12) as a stage AFTER the base optimizer:
  u <- u - lr_t * weight_decay * p, with lr_t the (possibly scheduled) learning rate.
  Built with ``optax.add_decayed_weights`` under ``inject_hyperparams``; state: the
  injected hyperparameters (and the schedule's step count)."""
  return inject(_decayed_weights, learning_rate=learning_rate, weight_decay=weight_decay)


class Remedy(NamedTuple):
  """kind: 'pre' (before the base optimizer), 'post' (after it) or 'guard' (wraps the
  chain). reads: hp keys. build: hp -> stage ('pre'/'post'), (hp, inner) -> guard."""

  kind: str
  reads: tuple[str, ...]
  build: Callable[..., optax.GradientTransformation]


REMEDIES: Registry[Remedy] = Registry("remedy")
REMEDIES.register("global_norm")(
  Remedy("pre", ("clip",), lambda hp: clip_by_global_norm(hp["clip"])))
REMEDIES.register("value")(
  Remedy("pre", ("clip_value",), lambda hp: clip_by_value(hp["clip_value"])))
REMEDIES.register("agc")(
  Remedy("pre", ("agc_clip",), lambda hp: adaptive_clip(hp["agc_clip"])))
REMEDIES.register("layer_norm")(
  Remedy("pre", ("layer_clip",), lambda hp: clip_by_layer_norm(hp["layer_clip"])))
REMEDIES.register("weight_decay")(
  Remedy("post", ("weight_decay",), lambda hp: decoupled_weight_decay(
    hp["learning_rate"], hp["weight_decay"])))
REMEDIES.register("loss_spike")(
  Remedy("guard", ("spike_factor", "spike_decay"), lambda hp, inner: guards.loss_spike(
    inner, hp["spike_factor"], hp["spike_decay"])))
REMEDIES.register("loss_scale")(
  Remedy("guard", ("loss_scale_init", "loss_scale_period"), lambda hp, inner: guards.loss_scale(
    inner, hp["loss_scale_init"], hp["loss_scale_period"])))
REMEDIES.register("skip_nonfinite")(
  Remedy("guard", (), lambda hp, inner: guards.skip_nonfinite(inner)))
