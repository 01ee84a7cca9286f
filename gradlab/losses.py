"""Training losses by name, each with the loss of the best constant predictor.

``chance(labels, num_classes)`` is what `gradlab.regimes` judges ``stalled`` against:
a run that does not beat the best constant prediction by the stall fraction stalled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradlab.registry import Registry


class Loss(NamedTuple):
  fn: Callable[[jax.Array, jax.Array], jax.Array]   # (logits (B, K), labels (B,)) -> scalar
  chance: Callable[[np.ndarray, int], float]         # (train labels, K) -> constant's loss


LOSSES: Registry[Loss] = Registry("loss")


def _class_frequencies(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return np.bincount(np.asarray(labels).ravel(), minlength=num_classes) / np.size(labels)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def cross_entropy_chance(labels: np.ndarray, num_classes: int) -> float:
  """The entropy of the label marginal (log K for K balanced classes)."""
  p = _class_frequencies(labels, num_classes)
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def mse(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """0.5 * mean over examples of ||logits - onehot(label)||^2: with a linear model and
  full batches, a quadratic in the parameters (gradient descent on it diverges exactly
  above lr = 2 / lambda_max of its Hessian)."""
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return 0.5 * jnp.mean(jnp.sum((logits - onehot) ** 2, axis=-1))


def mse_chance(labels: np.ndarray, num_classes: int) -> float:
  """The best constant prediction is the class frequency vector p:
  0.5 * sum_k p_k (1 - p_k)."""
  p = _class_frequencies(labels, num_classes)
  return float(0.5 * np.sum(p * (1 - p)))


LOSSES.register("cross_entropy")(Loss(cross_entropy, cross_entropy_chance))
LOSSES.register("mse")(Loss(mse, mse_chance))
