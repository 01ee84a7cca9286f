"""Closed-form stability limits: edge-of-stability sharpness thresholds and Pascanu's
recurrent condition (numpy). Re-exported by `gradlab.theory`, the door to every closed form.

1. Edge-of-stability sharpness limits for a learning rate (Cohen et al. 2021, "Gradient
   descent on neural networks typically occurs at the edge of stability"; Cohen et al.
   2022, "Adaptive gradient methods at the edge of stability").
2. The recurrent-weight condition of Pascanu et al. 2013 ("On the difficulty of training
   recurrent neural networks").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from gradlab.registry import Registry

ArrayLike = float | np.ndarray


# --------------------------------------------------------------------- edge of stability


class _Threshold(NamedTuple):
  fn: Callable[[ArrayLike, float], ArrayLike]
  source: str


SHARPNESS_THRESHOLDS: Registry[_Threshold] = Registry("optimizer (sharpness threshold)")
SHARPNESS_THRESHOLDS.register("sgd", "gd")(_Threshold(
  lambda lr, beta: 2.0 / lr, "Cohen et al. 2021, sec. 2: GD on a quadratic is stable iff "
  "lambda_max < 2 / lr"))
SHARPNESS_THRESHOLDS.register("momentum", "heavy_ball")(_Threshold(
  lambda lr, beta: (2.0 + 2.0 * beta) / lr, "Cohen et al. 2021, heavy-ball momentum beta "
  "(m = beta m + g, x -= lr m): lambda_max < (2 + 2 beta) / lr"))
SHARPNESS_THRESHOLDS.register("nesterov")(_Threshold(
  lambda lr, beta: (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * lr), "Cohen et al. 2021, "
  "Nesterov momentum beta: lambda_max < (2 + 2 beta) / ((1 + 2 beta) lr)"))
SHARPNESS_THRESHOLDS.register("adam", "adamw")(_Threshold(
  lambda lr, beta: (2.0 + 2.0 * beta) / ((1.0 - beta) * lr), "Cohen et al. 2022, Adam as "
  "EMA momentum beta1 preconditioned by P: lambda_max(P^-1 H) < (2 + 2 beta1) / "
  "((1 - beta1) lr), 38 / lr at beta1 = 0.9"))


def sharpness_threshold(optimizer: str, lr: ArrayLike, beta: float = 0.9) -> ArrayLike:
  """The largest (preconditioned, for Adam) sharpness at which `optimizer` with learning
  rate `lr` is stable on a quadratic (each is where the 2 x 2 linear recurrence of the
  iterate and its momentum gets an eigenvalue -1), the level the sharpness hovers at while
  training at the edge of stability. `beta` is the momentum (momentum, nesterov) or Adam's
  beta1, ignored for sgd. Sources: ``SHARPNESS_THRESHOLDS.get(name).source``."""
  return SHARPNESS_THRESHOLDS.get(optimizer).fn(np.asarray(lr, float), float(beta))


# ---------------------------------------------------------------------------------- RNN

# gamma: a bound on |phi'| (Pascanu et al. 2013, sec. 2.1): 1 for tanh, 1/4 for sigmoid.
ACTIVATION_DERIVATIVE_BOUND: dict[str, float] = {
  "tanh": 1.0, "sigmoid": 0.25, "linear": 1.0, "relu": 1.0, "erf": 2.0 / np.sqrt(np.pi),
}


def pascanu_condition(largest_singular_value: float, gamma: float) -> str:
  """Pascanu et al. 2013 ("On the difficulty of training recurrent neural networks",
  sec. 2.1, "The mechanics"): with ||diag(phi')|| <= gamma and s the largest singular
  value of the recurrent weight, s < 1 / gamma is SUFFICIENT for the gradients to vanish
  ("vanishes") and s > 1 / gamma is NECESSARY for them to explode ("may explode"; the
  boundary s = 1 / gamma also counts as "may explode", since vanishing is not proven)."""
  return "vanishes" if largest_singular_value * gamma < 1.0 else "may explode"
