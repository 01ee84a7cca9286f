"""BatchNorm statistics for averaged weights: SWA's update (Izmailov et al. 2018).

Reference: Izmailov, Podoprikhin, Garipov, Vetrov and Wilson, "Averaging Weights Leads to
Wider Optima and Better Generalization" (UAI 2018), sec. 3.2: the running statistics a
network collected during training belong to the iterates, not to their average, so before
evaluating the averaged weights w_avg, SWA makes one pass over the training data with
w_avg, BatchNorm in train mode, and sets each BatchNorm layer's statistics to the
cumulative average of its batch statistics over that pass (PyTorch's
``torch.optim.swa_utils.update_bn``, momentum None):

    mu  = (1 / n) * sum_{k=1..n} mean_B(h_k),    var = (1 / n) * sum_{k=1..n} var_B(h_k)

where h_k are the pre-BatchNorm activations of batch k under w_avg (each layer fed by the
layers before it in train mode) and mean_B/var_B are the statistics flax's BatchNorm
computes over the batch (its biased variance).

Flax's BatchNorm keeps an EMA, new = m * old + (1 - m) * b, with a momentum m fixed by the
module; `recompute` reads m from each BatchNorm module while the model is applied
(``flax.linen.intercept_methods``), recovers b = (new - m * old) / (1 - m) and keeps the
running mean R_k = R_{k-1} + (b_k - R_{k-1}) / k, so the statistics the run held before
(R_0) do not count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Stats = Any  # the model's 'batch_stats' collection: {module path...: {'mean', 'var'}}


def _record_momentum(momenta: dict[tuple[str, ...], float], next_fun: Callable[..., Any],
                     args: tuple, kwargs: dict, context: Any) -> Any:
  """A flax method interceptor: notes each BatchNorm's momentum by its module path."""
  if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
    momenta[tuple(context.module.path)] = float(context.module.momentum)
  return next_fun(*args, **kwargs)


def _module_path(path: tuple) -> tuple[str, ...]:
  """('ConvBlock_0', 'bn', 'mean') key path of a stats leaf -> its module's path."""
  return tuple(str(getattr(k, "key", k)) for k in path[:-1])


def recompute(apply_train: Callable[[Stats, jax.Array], Stats],
              batch: Callable[[jax.Array], jax.Array], n_batches: int, stats: Stats) -> Stats:
  """The cumulative average of the batch statistics over `n_batches` batches (see the
  module docstring). `apply_train(stats, x)` applies the model (averaged weights, train
  mode) to inputs `x` starting from `stats` and returns the updated 'batch_stats';
  `batch(k)` gives batch k's inputs; `stats` fixes the structure (its values do not
  count)."""

  def body(running: Stats, k: jax.Array) -> tuple[Stats, None]:
    momenta: dict[tuple[str, ...], float] = {}
    with nn.intercept_methods(lambda *a: _record_momentum(momenta, *a)):
      new = apply_train(running, batch(k))

    def update(path, old, new_leaf):
      m = momenta[_module_path(path)]
      batch_stat = (new_leaf - m * old) / (1.0 - m)
      return old + (batch_stat - old) / (k + 1).astype(old.dtype)

    return jax.tree_util.tree_map_with_path(update, running, new), None

  running, _ = jax.lax.scan(body, stats, jnp.arange(n_batches))
  return running
