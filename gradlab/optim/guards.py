"""Guards: wrappers that skip a whole optimizer step, and the skip counter.

A guard wraps the complete inner transformation (remedy stages + base optimizer + ...).
When it skips a step, the update is zero and the inner state is kept as it was (moments,
step counts, schedules and averages do not advance); training then goes on. Skips are
counted in the guard's state; `skip_count` sums the counters in any optimizer state.

The loss reaches `loss_spike` through optax's extra-args convention: the training step
calls ``tx.update(grads, opt_state, params, value=loss)`` (``optax.chain`` hands extra
keyword arguments to every stage that takes them; other stages ignore them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradlab.probes import all_finite


class SkipNonFiniteState(NamedTuple):
  """inner_state: the wrapped transformation's state. skips: steps skipped (int32)."""

  inner_state: optax.OptState
  skips: jax.Array


class LossSpikeState(NamedTuple):
  """inner_state: the wrapped state. loss_ema: EMA of accepted losses (not yet
  bias-corrected). n_accepted: accepted steps (int32). skips: steps skipped (int32)."""

  inner_state: optax.OptState
  loss_ema: jax.Array
  n_accepted: jax.Array
  skips: jax.Array


class LossScaleState(NamedTuple):
  """inner_state: the wrapped state. scale: the current loss scale (float32).
  good_steps: finite steps since the scale last changed (int32). skips: steps skipped
  for non-finite gradients (int32)."""

  inner_state: optax.OptState
  scale: jax.Array
  good_steps: jax.Array
  skips: jax.Array


def _finite(updates: Any, extra_args: dict[str, Any]) -> jax.Array:
  """Whether every gradient entry, and the loss passed as ``value=`` if any, is finite."""
  finite = all_finite(updates)
  if extra_args.get("value") is not None:
    finite = finite & jnp.all(jnp.isfinite(extra_args["value"]))
  return finite


def _select(keep_new: jax.Array, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda n, o: jnp.where(keep_new, n, o), new, old)


def _zeros_unless(keep: jax.Array, updates: Any) -> Any:
  return jax.tree.map(lambda u: jnp.where(keep, u, jnp.zeros_like(u)), updates)


def skip_nonfinite(inner: optax.GradientTransformation
                   ) -> optax.GradientTransformationExtraArgs:
  """Skips the step when any gradient entry is NaN or +-inf, or the loss passed as
  ``update(..., value=loss)`` is: the update is zero and the inner state is kept;
  ``skips`` counts such steps. (The guard tests the incoming gradients and loss only: a
  non-finite update from finite gradients is the optimizer's own blow-up and is let
  through, so divergence stays visible.) Cf. optax.apply_if_finite, without its
  give-up-after-n rule."""
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return SkipNonFiniteState(inner.init(params), jnp.zeros([], jnp.int32))

  def update_fn(updates, state: SkipNonFiniteState, params=None, **extra_args):
    finite = _finite(updates, extra_args)
    new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
    return _zeros_unless(finite, new_updates), SkipNonFiniteState(
      _select(finite, new_inner, state.inner_state),
      state.skips + (~finite).astype(jnp.int32))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def loss_spike(inner: optax.GradientTransformation, factor: Any, decay: Any
               ) -> optax.GradientTransformationExtraArgs:
  """Skips the step when the loss spikes: loss > factor * mean, where mean is the
  bias-corrected EMA of the losses of ACCEPTED steps,
      ema <- decay * ema + (1 - decay) * loss,   mean = ema / (1 - decay^n_accepted)
  (the guard of large-model training, e.g. Chowdhery et al. 2022, "PaLM", Section 5.1,
  here per step and automatic). A non-finite loss is a spike; the first step is never
  one. Needs the loss as ``update(..., value=loss)``. `factor`, `decay` may be traced."""
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    zero = jnp.zeros([], jnp.int32)
    return LossSpikeState(inner.init(params), jnp.zeros([], jnp.float32), zero, zero)

  def update_fn(updates, state: LossSpikeState, params=None, **extra_args):
    if "value" not in extra_args:
      raise ValueError("loss_spike needs the loss: call tx.update(grads, opt_state, "
                       "params, value=loss)")
    loss = jnp.asarray(extra_args["value"], jnp.float32)
    n = state.n_accepted
    mean = state.loss_ema / (1.0 - decay ** jnp.maximum(n, 1).astype(jnp.float32))
    spike = ~jnp.isfinite(loss) | ((n > 0) & (loss > factor * mean))
    accept = ~spike
    new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
    ema = decay * state.loss_ema + (1.0 - decay) * loss
    return _zeros_unless(accept, new_updates), LossSpikeState(
      _select(accept, new_inner, state.inner_state),
      jnp.where(accept, ema, state.loss_ema).astype(jnp.float32),
      n + accept.astype(jnp.int32),
      state.skips + spike.astype(jnp.int32))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def loss_scale(inner: optax.GradientTransformation, initial: Any, period: Any
               ) -> optax.GradientTransformationExtraArgs:
  """Dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision Training",
  Section 3.2; the rule of jmp's DynamicLossScale). The training step multiplies the
  loss by ``loss_scale_of(opt_state)`` before the backward pass and divides the
  gradients by it after (`gradlab.step.train_step`); this guard sees the unscaled
  gradients. A step whose gradients (or loss) are not finite is skipped (zero update,
  inner state kept) and halves the scale (never below 1); after `period` finite steps in
  a row the scale doubles. `initial` and `period` may be traced."""
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    zero = jnp.zeros([], jnp.int32)
    return LossScaleState(inner.init(params), jnp.asarray(initial, jnp.float32), zero, zero)

  def update_fn(updates, state: LossScaleState, params=None, **extra_args):
    finite = _finite(updates, extra_args)
    new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
    good = jnp.where(finite, state.good_steps + 1, 0)
    grow = good >= period
    scale = jnp.where(finite, jnp.where(grow, state.scale * 2.0, state.scale),
                      jnp.maximum(state.scale / 2.0, 1.0))
    return _zeros_unless(finite, new_updates), LossScaleState(
      _select(finite, new_inner, state.inner_state), scale.astype(jnp.float32),
      jnp.where(grow, 0, good).astype(jnp.int32), state.skips + (~finite).astype(jnp.int32))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def loss_scale_of(opt_state: optax.OptState) -> jax.Array | None:
  """The current loss scale of a chain with the `loss_scale` guard; None without one
  (decided by the state's structure, so it is static under jit)."""
  states = list(find_states(opt_state, LossScaleState))
  return states[0].scale if states else None


def find_states(tree: Any, cls: type) -> Iterator[Any]:
  """Every instance of the NamedTuple state class `cls` inside an optimizer state,
  outermost first (walks tuples, lists, dicts and NamedTuples, wrappers included)."""
  if isinstance(tree, cls):
    yield tree
  if isinstance(tree, dict):
    for value in tree.values():
      yield from find_states(value, cls)
  elif isinstance(tree, tuple | list):
    for value in tree:
      yield from find_states(value, cls)


def skip_count(opt_state: optax.OptState) -> jax.Array:
  """Total steps skipped by every guard (non-finite and loss-spike) in `opt_state`;
  an int32 zero when the chain has no guard. Batched states give batched counts."""
  counts = [s.skips for cls in (SkipNonFiniteState, LossSpikeState, LossScaleState)
            for s in find_states(opt_state, cls)]
  return sum(counts[1:], counts[0]) if counts else jnp.zeros([], jnp.int32)
