"""Gadam: AdamW plus iterate averaging (IA), and the averaging stage on its own.

Reference: Granziol, Wan, Albanie and Roberts, "Gadam: Combining Adaptivity with
Iterate Averaging Gives Greater Generalisation" (arXiv:2003.01247; later versions are
titled "Iterate Averaging in the Quest for Best Test Error"). Gadam runs Adam with
decoupled weight decay (AdamW, Loshchilov and Hutter 2019) and, from a start step T_avg
on, keeps the arithmetic mean of the iterates, updated every k steps:

    w_{t+1} = w_t - lr * (m_hat_t / (sqrt(v_hat_t) + eps) + weight_decay * w_t)
    w_avg   = (1 / n) * sum_{j=1..n} w_{t_j},   t_j = T_avg + (j - 1) k,   t_j >= 1

where w_t is the parameter vector after t updates (the initial w_0 is never averaged).
Training continues from w_t; evaluation uses w_avg (`gradlab.optim.eval_params`).
Both T_avg (``hp['average_start']``) and k (``hp['average_every']``) are TRACED: they
are rounded to integers inside the step and k is floored at 1. Unset, T_avg is half of
``train.steps`` (rounded down; `gradlab.optim.resolve_numbers`): the average leaves out
the early transient, as SWA starts late in training (Izmailov et al. 2018, sec. 3.2);
set ``optimizer.average_start=0`` to average from the first update.

A model with BatchNorm is evaluated with statistics recomputed for w_avg (SWA's rule,
Izmailov et al. 2018 sec. 3.2): `gradlab.step.recompute_batch_stats`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradlab.optim.registry import Hparams, inject, register


class IterateAverageState(NamedTuple):
  """count: updates seen so far (int32). n_averaged: iterates in the mean (int32).
  average: running arithmetic mean of the averaged iterates (zeros while n == 0)."""

  count: jax.Array
  n_averaged: jax.Array
  average: optax.Params


def iterate_average(average_start: Any, average_every: Any) -> optax.GradientTransformation:
  """Keeps the running mean of the iterates w_t, t >= start, (t - start) % every == 0.

  A pass-through stage placed LAST in a chain: the incoming updates are the final ones,
  so the new iterate is ``params + updates``; the mean is updated incrementally,
  avg <- avg + (w_t - avg) / n. Needs ``params`` in ``update``.
  """

  def init_fn(params: optax.Params) -> IterateAverageState:
    zero = jnp.zeros([], jnp.int32)
    return IterateAverageState(zero, zero, jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state: IterateAverageState, params=None):
    if params is None:
      raise ValueError("iterate_average needs params: call update(grads, state, params)")
    count = state.count + 1
    start = jnp.round(average_start)
    every = jnp.maximum(jnp.round(average_every), 1.0)
    since = count.astype(every.dtype) - start
    take = (since >= 0) & (jnp.mod(since, every) == 0)
    n_averaged = state.n_averaged + take.astype(jnp.int32)
    inv_n = 1.0 / jnp.maximum(n_averaged, 1).astype(every.dtype)

    def average(avg, p, u):
      new = avg + (p + u - avg) * inv_n.astype(avg.dtype)
      return jnp.where(take, new, avg)

    avg = jax.tree.map(average, state.average, params, updates)
    return updates, IterateAverageState(count, n_averaged, avg)

  return optax.GradientTransformation(init_fn, update_fn)


def averaged_params(state: IterateAverageState, params: optax.Params) -> optax.Params:
  """The iterate average where one exists (n_averaged > 0), else `params` as they are."""
  has_average = state.n_averaged > 0
  return jax.tree.map(lambda a, p: jnp.where(has_average, a, p), state.average, params)


def gadam_transform(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
                    weight_decay: Any = 0.0, average_start: Any = 0.0,
                    average_every: Any = 1.0) -> optax.GradientTransformation:
  """Gadam as an optax chain: AdamW, then `iterate_average` (see the module docstring)."""
  return optax.chain(
    optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay),
    iterate_average(average_start, average_every),
  )


@register("gadam", ["learning_rate", "b1", "b2", "eps", "weight_decay", "average_start",
                    "average_every"], "Granziol et al. 2020 (arXiv:2003.01247)",
          steps_fraction={"average_start": 0.5})
def gadam(hp: Hparams) -> optax.GradientTransformation:
  """Gadam (Granziol et al. 2020): AdamW steps; evaluation uses the iterate average from
  step average_start on, every average_every steps (both traced)."""
  return inject(gadam_transform, **hp)
