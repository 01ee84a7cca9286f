"""A linear model (one Dense readout): with the mse loss and full batches, training is
gradient descent on a quadratic, whose stability boundary is known in closed form."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from gradlab.models.init import INIT_FAMILIES, unit_bias_init
from gradlab.models.registry import MODELS, Model


class Linear(nn.Module):
  """logits = x W + b, with W, b from the unit-scale init family (scaled afterwards)."""

  num_outputs: int
  use_bias: bool = True
  init_family: str = "lecun"

  @nn.compact
  def __call__(self, x_BxF: jax.Array, train: bool = False) -> jax.Array:
    del train  # no train-time behaviour
    h = x_BxF.reshape(x_BxF.shape[0], -1)
    kernel_init = INIT_FAMILIES.get(self.init_family)
    return nn.Dense(self.num_outputs, self.use_bias, kernel_init=kernel_init,
                    bias_init=unit_bias_init, name="readout")(h)


@MODELS.register("linear")
def build_linear(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  """model.depth, width and activation are ignored."""
  return Model(Linear(num_outputs, bool(model_cfg.use_bias), init_family), ["readout"])
