"""The ImageNet ResNet with bottleneck blocks ('resnet_bottleneck'; ResNet-50/101/152).

He et al. 2016, "Deep Residual Learning for Image Recognition", Table 1, in the v1.5
form used by most implementations since (the stride of a downsampling block sits in its
3x3 convolution, not its first 1x1; e.g. torchvision's resnet50, Goyal et al. 2017).
``model.depth`` 50, 101 or 152 picks the blocks per stage ([3, 4, 6, 3], [3, 4, 23, 3],
[3, 8, 36, 3]); ``model.width`` is the first stage's bottleneck width (64 in the paper;
a stage's blocks output 4 x its width, the widths doubling per stage).

Structure: a 7x7 stride-2 ``stem`` convolution (+ norm, activation) and a 3x3 stride-2
max pool; four stages of bottleneck blocks

    r = norm3(conv3_1x1(act(norm2(conv2_3x3(act(norm1(conv1_1x1(x))))))))
    out = act(shortcut(x) + g * r)

(shortcut: identity, or a strided 1x1 convolution + norm where the shape changes); global
average pool; Dense ``readout``. ``model.norm``, ``model.residual_init`` (none, skipinit,
zero_gamma on norm3) and ``train.remat`` (per block) work as in the CIFAR 'resnet'
family (`gradlab.models.resnet`), so BatchNorm can be compared with no normalization
plus AGC or SkipInit. With ``model.use_bias = False`` and BatchNorm at 1000 classes it
has the published 25,557,032 parameters (tests/test_resnet50.py).

Layer names: ``stem``, ``block_{stage}_{i}``, ``readout``; each block sows
``<name>_finite`` on its output.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradlab.models.activations import ACTIVATIONS
from gradlab.models.cnn import ConvUnit, check_norm
from gradlab.models.init import INIT_FAMILIES, unit_bias_init
from gradlab.models.registry import MODELS, Model
from gradlab.models.resnet import block_layer_names, check_residual_init
from gradlab.registry import ConfigError

STAGE_BLOCKS: dict[int, tuple[int, ...]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
                                            152: (3, 8, 36, 3)}
EXPANSION = 4


class Bottleneck(nn.Module):
  """1x1 (width) -> 3x3 (width, stride) -> 1x1 (4 x width), post-activation."""

  width: int
  stride: int
  activation: str
  norm: str
  residual_init: str
  use_bias: bool
  init_family: str

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = ACTIVATIONS.get(self.activation)
    unit = dict(norm=self.norm, use_bias=self.use_bias, init_family=self.init_family)
    out = self.width * EXPANSION
    h = act(ConvUnit(self.width, 1, 1, name="conv1", **unit)(x, train))
    h = act(ConvUnit(self.width, 3, self.stride, name="conv2", **unit)(h, train))
    r = ConvUnit(out, 1, 1, zero_scale=self.residual_init == "zero_gamma", name="conv3",
                 **unit)(h, train)
    if self.residual_init == "skipinit":
      r = self.param("skip_gain", nn.initializers.zeros, ()) * r
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out:
      shortcut = ConvUnit(out, 1, self.stride, name="shortcut", **unit)(x, train)
    return shortcut + r


class BottleneckResNet(nn.Module):
  depth: int
  width: int
  num_outputs: int
  activation: str = "relu"
  norm: str = "batch"
  residual_init: str = "none"
  use_bias: bool = False
  init_family: str = "he"
  remat: bool = False  # train.remat: recompute each block's activations in the backward

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = ACTIVATIONS.get(self.activation)
    block = nn.remat(Bottleneck, static_argnums=(2,)) if self.remat else Bottleneck
    h = x if x.ndim == 4 else x.reshape(*x.shape, 1)
    h = act(ConvUnit(self.width, 7, 2, self.norm, self.use_bias, self.init_family,
                     name="stem")(h, train))
    self.sow("intermediates", "stem_finite", jnp.all(jnp.isfinite(h)))
    h = nn.max_pool(h, (3, 3), strides=(2, 2), padding="SAME")
    for stage, i in block_index(self.depth):
      name = f"block_{stage}_{i}"
      h = act(block(self.width * 2 ** stage, 2 if stage > 0 and i == 0 else 1,
                    self.activation, self.norm, self.residual_init, self.use_bias,
                    self.init_family, name=name)(h, train))
      self.sow("intermediates", f"{name}_finite", jnp.all(jnp.isfinite(h)))
    pooled = h.mean(axis=(1, 2))
    # the readout keeps its bias (the paper's fc layer has one) even without conv biases
    return nn.Dense(self.num_outputs, True, kernel_init=INIT_FAMILIES.get(self.init_family),
                    bias_init=unit_bias_init, name="readout")(pooled)


def block_index(depth: int) -> list[tuple[int, int]]:
  """(stage, block) of every bottleneck block of a depth-`depth` network."""
  if depth not in STAGE_BLOCKS:
    raise ConfigError(f"config key 'model.depth' for model 'resnet_bottleneck' must be one of "
                      f"{', '.join(map(str, STAGE_BLOCKS))}, got {depth}")
  return [(s, i) for s, n in enumerate(STAGE_BLOCKS[depth]) for i in range(n)]


@MODELS.register("resnet_bottleneck")
def build_resnet_bottleneck(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  depth, norm = int(model_cfg.depth), check_norm(model_cfg)
  residual_init = check_residual_init(model_cfg, norm)
  module = BottleneckResNet(depth=depth, width=int(model_cfg.width), num_outputs=num_outputs,
                            activation=model_cfg.activation, norm=norm,
                            residual_init=residual_init, use_bias=bool(model_cfg.use_bias),
                            init_family=init_family)
  return Model(module, block_layer_names(block_index(depth)))
