"""A fully connected network: the model of the mean-field signal-propagation papers.

``model.norm`` puts a normalization after each hidden Dense layer (before the
activation): ``none``, ``batch`` (BatchNorm over the minibatch, the setting of Yang et al.
2019, "A Mean Field Theory of Batch Normalization": the same factory as the convolutional
families, `gradlab.models.cnn.NORMS`, so its running averages live in the collection
'batch_stats' that `gradlab.train` carries per lane) or ``layer`` (the same as
``model.layer_norm``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradlab.config import register_keys
from gradlab.models.activations import ACTIVATIONS
from gradlab.models.cnn import make_norm
from gradlab.models.init import INIT_FAMILIES, unit_bias_init
from gradlab.models.parameterization import dense, for_model
from gradlab.models.registry import MODELS, Model
from gradlab.registry import ConfigError

# mlp's own model key (depth, width, activation, use_bias: gradlab.models.registry).
MLP_KEYS: dict[str, Any] = register_keys("model", dict(layer_norm=False), family="mlp")
# model.norm values the MLP takes ('layer' is model.layer_norm's LayerNorm).
MLP_NORMS: tuple[str, ...] = ("none", "batch", "layer")


class MLP(nn.Module):
  """depth hidden Dense layers of `width` units, then a Dense readout.

  Layer i is ``dense_i`` (optionally followed by the normalization ``norm_i``: `norm`
  'layer' or 'batch') and the activation; the readout is ``readout``. Inputs are
  flattened. All kernels come from the unit-scale `init_family`;
  `gradlab.models.init.scale_params` applies sigma_w, sigma_b (the readout included, as
  in the mean-field papers).
  """

  depth: int
  width: int
  num_outputs: int
  activation: str = "tanh"
  layer_norm: bool = False
  norm: str = "none"  # none | batch | layer (MLP_NORMS); layer_norm=True means 'layer'
  use_bias: bool = True
  init_family: str = "lecun"
  # the forward multipliers of model.parameterization: (first layer, hidden, readout)
  multipliers: tuple[float, float, float] = (1.0, 1.0, 1.0)
  readout_zero_init: bool = False  # model.readout_zero_init

  @nn.compact
  def __call__(self, x_BxF: jax.Array, train: bool = False) -> jax.Array:
    act = ACTIVATIONS.get(self.activation)
    kernel_init = INIT_FAMILIES.get(self.init_family)
    h = x_BxF.reshape(x_BxF.shape[0], -1)
    for i in range(self.depth):
      h = dense(self.width, self.use_bias, self.multipliers[min(i, 1)], f"dense_{i}",
                kernel_init, unit_bias_init)(h)
      # probes: is this layer's pre-activation finite? (read with mutable='intermediates')
      self.sow("intermediates", f"dense_{i}_finite", jnp.all(jnp.isfinite(h)))
      if self.layer_norm or self.norm == "layer":
        h = nn.LayerNorm(name=f"norm_{i}")(h)
      elif self.norm == "batch":  # minibatch statistics in training, running ones in eval
        h = make_norm("batch", train, f"norm_{i}", self.width)(h)
      h = act(h)
    readout_init = nn.initializers.zeros_init() if self.readout_zero_init else kernel_init
    return dense(self.num_outputs, self.use_bias, self.multipliers[2], "readout",
                 readout_init, unit_bias_init)(h)


def mlp_layer_names(depth: int) -> list[str]:
  return [f"dense_{i}" for i in range(depth)] + ["readout"]


def mlp_kind(path: tuple[str, ...]) -> str:
  """The parameterization kind of an MLP parameter: dense_0's kernel is the input layer,
  dense_i's (i > 0) hidden, the readout's the output; hidden biases and norm
  parameters are width-n vectors; the readout's bias is width-independent."""
  layer, leaf = path[0], path[-1]
  if layer == "readout":
    return "output" if leaf == "kernel" else "fixed"
  if leaf == "kernel":
    return "input" if layer == "dense_0" else "hidden"
  return "vector"


def check_mlp_norm(model_cfg: Any) -> str:
  """model.norm for the MLP: one of MLP_NORMS, and not 'batch' with model.layer_norm."""
  norm = str(model_cfg.norm)
  if norm not in MLP_NORMS:
    raise ConfigError(f"config key 'model.norm' is '{norm}' but model 'mlp' takes "
                      f"{', '.join(MLP_NORMS)}")
  if norm == "batch" and bool(model_cfg.layer_norm):
    raise ConfigError("config keys 'model.norm'='batch' and 'model.layer_norm'=True both "
                      "normalize the MLP's layers: choose one")
  return norm


@MODELS.register("mlp")
def build_mlp(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  scaling = for_model(model_cfg)
  mult = scaling.multiplier
  model = MLP(
    depth=int(model_cfg.depth),
    width=int(model_cfg.width),
    num_outputs=num_outputs,
    activation=model_cfg.activation,
    layer_norm=bool(model_cfg.layer_norm),
    norm=check_mlp_norm(model_cfg),
    use_bias=bool(model_cfg.use_bias),
    init_family=init_family,
    multipliers=(mult["input"], mult["hidden"], mult["output"]),
    readout_zero_init=bool(model_cfg.get("readout_zero_init", False)),
  )
  names = mlp_layer_names(int(model_cfg.depth))
  return Model(model, names, hidden_layers=tuple(names[:-1]),  # dense_0 .. dense_{L-1}
               kind_of=mlp_kind, scaling=None if scaling.is_standard else scaling)


