"""Evaluation after training: the test split's loss and metrics (`evaluate`) and the
model state to evaluate with (`eval_state`: BatchNorm statistics recomputed for
optimizers that evaluate other parameters than they train). Module-level functions of
``(static, lane, ...)`` like those of `gradlab.step`, which `gradlab.train.finish` calls.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradlab.optim import batch_stats, evaluated_with
from gradlab.step import Lane, Static, apply_model, batch_at, objective


def evaluate(static: Static, lane: Lane, params: Any, state: dict[str, Any]
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Loss and metrics on the whole test split (evaluation mode: normalization layers
  use their running statistics); NaN for an empty split."""
  x, y = lane.data.x_test, lane.data.y_test
  if x.shape[0] == 0:
    x1, y1 = jnp.zeros((1, *x.shape[1:]), x.dtype), jnp.zeros((1, *y.shape[1:]), y.dtype)
    names = [] if static.metrics is None else list(jax.eval_shape(
      lambda: static.metrics(apply_model(static, params, state, x1, False)[0], y1)))
    nan = jnp.array(jnp.nan, jnp.float32)
    return nan, {n: nan for n in names}
  outputs = apply_model(static, params, state, x, False)[0]
  metrics = dict(static.metrics(outputs, y)) if static.metrics is not None else {}
  return objective(static, lane.hp, outputs, y), {
    k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def eval_state(static: Static, lane: Lane, params: Any, state: dict[str, Any],
               first_step: jax.Array | int) -> dict[str, Any]:
  """The model state to evaluate `params` with. When the optimizer evaluates other
  parameters than it trains (`gradlab.optim.evaluated_with`: Gadam's iterate average,
  schedule-free's x) and the model has BatchNorm statistics, they are recomputed for
  `params` as SWA does (`gradlab.optim.batch_stats.recompute`): one epoch's worth of
  training minibatches (ceil(train examples / batch size), those the training stream
  draws at steps first_step, first_step + 1, ...), train mode, cumulative average.
  Otherwise `state` as it is."""
  if evaluated_with(static.opt_name) == "last" or "batch_stats" not in state:
    return state

  def apply_train(stats: Any, xb: jax.Array) -> Any:
    return apply_model(static, params, {**state, "batch_stats": stats}, xb,
                       train=True)[1]["batch_stats"]

  n_batches = max(1, -(-lane.data.x_train.shape[0] // static.batch_size))
  stats = batch_stats.recompute(apply_train, lambda k: batch_at(static, lane, first_step + k)[0],
                                n_batches, state["batch_stats"])
  return {**state, "batch_stats": stats}
