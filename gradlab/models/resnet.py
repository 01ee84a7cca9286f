"""The CIFAR ResNet ('resnet'; He et al. 2016, "Deep Residual Learning for Image
Recognition", Sec. 4.2), with or without normalization, and zero-initialized residuals.

Structure (``model.depth`` = 6n + 2: 20, 32, 56 are ResNet-20/32/56; 8 and 14 are the
lab-scale ones): a 3x3 ``stem`` convolution, then 3 stages of n residual blocks with
``width``, 2 x ``width`` and 4 x ``width`` channels (``model.width`` = 16 is the paper's
16/32/64), the first block of stages 2 and 3 with stride 2; global average pool; Dense
``readout``. A block is the paper's post-activation block

    r = norm2(conv2(act(norm1(conv1(x)))))          (3x3 convolutions)
    out = act(shortcut(x) + g * r)

where the shortcut is the identity, or a strided 1x1 convolution (+ norm) where the
shape changes (the paper's option B), and g = 1 except with SkipInit. With
``model.conv_dims`` = 1 every convolution is 1-D and the inputs are sequences (B, L[, C])
(`gradlab.models.cnn.as_grid`); the default 2 takes images.

Options (static):
- ``model.norm``: none | batch | layer | group (`gradlab.models.cnn.NORMS`). BatchNorm
  uses minibatch statistics when training and its running averages (collection
  'batch_stats', carried per lane by `gradlab.train`) when evaluating.
- ``model.residual_init``:
  - ``none``: every branch starts as initialized by ``init.family`` and sigma_w;
  - ``skipinit``: a scalar gain g per block, initialized to 0, multiplies the branch
    (De & Smith 2020, "Batch Normalization Biases Residual Blocks Towards the Identity
    Function in Deep Networks", Sec. 4: x_{l+1} = x_l + alpha f(x_l), alpha = 0 at init);
    works without normalization;
  - ``zero_gamma``: the scale (gamma) of norm2, the last normalization of each branch,
    starts at 0 (Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in
    1 Hour", Sec. 5.1); needs a normalization.
  With either, every block computes act(shortcut(x)) at init: the identity on the
  non-negative outputs of a ReLU network, so the network starts as a shallow one.

Layer names (the probes' granularity: one per residual block): ``stem``,
``block_{stage}_{i}`` in order, ``readout``. Each sows ``<name>_finite`` on its
pre-activation. The default scale rule applies: every kernel x sigma_w, every bias x
sigma_b; SkipInit gains and norm scales are not scaled (a zero stays zero).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradlab.models.activations import ACTIVATIONS
from gradlab.models.cnn import ConvUnit, as_grid, check_conv_dims, check_norm
from gradlab.models.init import INIT_FAMILIES, unit_bias_init
from gradlab.models.registry import MODELS, Model
from gradlab.registry import ConfigError

RESIDUAL_INITS = ("none", "skipinit", "zero_gamma")
STAGES = 3


class ResidualBlock(nn.Module):
  """One post-activation block; returns shortcut(x) + g * r (before the activation)."""

  features: int
  stride: int
  kernel_size: int
  activation: str
  norm: str
  residual_init: str
  use_bias: bool
  init_family: str
  dims: int = 2  # spatial axes (model.conv_dims)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    unit = dict(kernel_size=self.kernel_size, norm=self.norm, use_bias=self.use_bias,
                init_family=self.init_family, dims=self.dims)
    h = ConvUnit(self.features, stride=self.stride, name="conv1", **unit)(x, train)
    h = ACTIVATIONS.get(self.activation)(h)
    r = ConvUnit(self.features, stride=1, zero_scale=self.residual_init == "zero_gamma",
                 name="conv2", **unit)(h, train)
    if self.residual_init == "skipinit":
      r = self.param("skip_gain", nn.initializers.zeros, ()) * r
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = ConvUnit(self.features, stride=self.stride, name="shortcut",
                          **{**unit, "kernel_size": 1})(x, train)
    return shortcut + r


class ResNet(nn.Module):
  depth: int
  width: int
  num_outputs: int
  kernel_size: int = 3
  activation: str = "relu"
  norm: str = "batch"
  residual_init: str = "none"
  use_bias: bool = True
  init_family: str = "lecun"
  conv_dims: int = 2
  remat: bool = False  # train.remat: recompute each block's activations in the backward

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = ACTIVATIONS.get(self.activation)
    block = nn.remat(ResidualBlock, static_argnums=(2,)) if self.remat else ResidualBlock
    h = ConvUnit(self.width, self.kernel_size, 1, self.norm, self.use_bias, self.init_family,
                 dims=self.conv_dims, name="stem")(as_grid(x, self.conv_dims), train)
    self.sow("intermediates", "stem_finite", jnp.all(jnp.isfinite(h)))
    h = act(h)
    for stage, i in block_index(self.depth):
      name = f"block_{stage}_{i}"
      h = block(self.width * 2 ** stage, 2 if stage > 0 and i == 0 else 1,
                self.kernel_size, self.activation, self.norm, self.residual_init,
                self.use_bias, self.init_family, self.conv_dims, name=name)(h, train)
      self.sow("intermediates", f"{name}_finite", jnp.all(jnp.isfinite(h)))
      h = act(h)
    pooled = h.mean(axis=tuple(range(1, h.ndim - 1)))  # global average pool
    return nn.Dense(self.num_outputs, self.use_bias, kernel_init=INIT_FAMILIES.get(
      self.init_family), bias_init=unit_bias_init, name="readout")(pooled)


def blocks_per_stage(depth: int) -> int:
  """n = (depth - 2) / 6, or a ConfigError naming the valid depths."""
  if depth < 8 or (depth - 2) % 6:
    raise ConfigError(f"config key 'model.depth' for model 'resnet' must be 6n + 2 with n >= 1 "
                      f"(8, 14, 20, 32, 44, 56, ...), got {depth}")
  return (depth - 2) // 6


def block_index(depth: int) -> list[tuple[int, int]]:
  n = blocks_per_stage(depth)
  return [(stage, i) for stage in range(STAGES) for i in range(n)]


def resnet_layer_names(depth: int) -> list[str]:
  return block_layer_names(block_index(depth))


def block_layer_names(blocks: list[tuple[int, int]]) -> list[str]:
  """The probes' layers of a residual network: ``stem``, ``block_{stage}_{i}``, ``readout``."""
  return ["stem", *(f"block_{s}_{i}" for s, i in blocks), "readout"]


def check_residual_init(model_cfg: Any, norm: str) -> str:
  """model.residual_init, one of RESIDUAL_INITS, and not zero_gamma without a norm."""
  residual_init = model_cfg.residual_init
  if residual_init not in RESIDUAL_INITS:
    raise ConfigError(f"unknown model.residual_init '{residual_init}'; known: "
                      f"{', '.join(RESIDUAL_INITS)}")
  if residual_init == "zero_gamma" and norm == "none":
    raise ConfigError("config key 'model.residual_init'='zero_gamma' zeroes the last norm's "
                      "scale and needs model.norm in batch, layer, group; use 'skipinit' "
                      "without normalization")
  return residual_init


@MODELS.register("resnet")
def build_resnet(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  depth, norm = int(model_cfg.depth), check_norm(model_cfg)
  residual_init = check_residual_init(model_cfg, norm)
  if int(model_cfg.kernel_size) < 1:
    raise ConfigError(f"config key 'model.kernel_size' must be positive, got "
                      f"{model_cfg.kernel_size}")
  module = ResNet(depth=depth, width=int(model_cfg.width), num_outputs=num_outputs,
                  kernel_size=int(model_cfg.kernel_size), activation=model_cfg.activation,
                  norm=norm, residual_init=residual_init, use_bias=bool(model_cfg.use_bias),
                  init_family=init_family, conv_dims=check_conv_dims(model_cfg))
  # hidden_layers (): the skip connections carry the gradient past every block, so the
  # first/last block ratio measures no compounding through depth
  return Model(module, resnet_layer_names(depth))
