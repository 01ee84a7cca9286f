"""Plain convolutional networks: a classifier ('cnn') and a localizer ('cnn_localizer').

Both share one trunk: ``depth`` 'SAME'-padded convolutions of ``width`` channels and a
``kernel_size`` x ``kernel_size`` kernel, each followed by an optional normalization
(``model.norm``: none | batch | layer | group, see `NORMS`) and the activation
(`gradlab.models.activations`). ``model.downsample`` of the convolutions have stride 2
(the rest stride 1): conv i has stride 2 when i is one of

    i_k = floor((k + 1) * depth / (downsample + 1)),   k = 0 .. min(downsample, depth) - 1,

i.e. spread evenly through the stack (depth 12, downsample 2: convs 4 and 8; depth 3,
downsample 3: every conv). Channel counts stay ``width`` throughout, the setting of the
mean-field analysis of CNNs (Xiao et al. 2018), so ``sigma_w`` has the same meaning at
every layer.

- 'cnn': trunk, global average pool, Dense ``readout``: logits (B, K).
- 'cnn_localizer': trunk, flatten (keeps where things are), then two Dense heads:
  ``box_head`` (4 box coordinates, in the units of the targets) and ``readout`` (class
  logits); outputs ``{'logits': (B, K), 'box': (B, 4)}`` for the 'localization' loss.

Layer names (the probes' granularity): ``conv_0`` .. ``conv_{depth-1}`` (each holds its
convolution and its normalization), then ``box_head`` (localizer only), then
``readout``. Each conv layer sows ``conv_i_finite`` (is its pre-activation finite?).
Kernels come from the unit-scale ``init.family`` (``delta_orthogonal`` for the
convolutions of Xiao et al.); the traced sigma_w, sigma_b multiply them through the
default scale rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradlab.config import register_keys
from gradlab.models.activations import ACTIVATIONS
from gradlab.models.init import INIT_FAMILIES, unit_bias_init
from gradlab.models.registry import MODELS, Model
from gradlab.registry import ConfigError, Registry

# The convolutional families' own model keys (cnn, cnn_localizer, resnet).
CNN_KEYS: dict[str, Any] = register_keys("model", dict(
  kernel_size=3, residual_init="none",  # none | skipinit | zero_gamma (resnet)
  downsample=2,  # cnn / cnn_localizer: how many convs have stride 2
), family="cnn")

# GroupNorm's group count: gcd(GROUPS, channels) (Wu & He 2018 use 32 groups; gradlab's
# lab-scale widths are 8..64 channels).
GROUPS = 8

# name -> (train, name, channels, scale_init) -> a normalization module, or None.
NormFactory = Callable[[bool, str, int, Callable[..., jax.Array]], "nn.Module | None"]
NORMS: Registry[NormFactory] = Registry("normalization")
NORMS.register("none")(lambda train, name, channels, scale_init: None)
# Ioffe & Szegedy 2015: statistics of the minibatch in training (the collection
# 'batch_stats' keeps running averages), the running averages in evaluation.
NORMS.register("batch")(lambda train, name, channels, scale_init: nn.BatchNorm(
  use_running_average=not train, momentum=0.9, epsilon=1e-5, scale_init=scale_init,
  name=name))
# Ba et al. 2016, over each example's whole feature map (H, W, C).
NORMS.register("layer")(lambda train, name, channels, scale_init: nn.LayerNorm(
  reduction_axes=(-3, -2, -1), scale_init=scale_init, name=name))
# Wu & He 2018.
NORMS.register("group")(lambda train, name, channels, scale_init: nn.GroupNorm(
  num_groups=math.gcd(GROUPS, channels), scale_init=scale_init, name=name))


def make_norm(kind: str, train: bool, name: str, channels: int,
              zero_scale: bool = False) -> nn.Module | None:
  """The normalization module `kind` (None for 'none'); `zero_scale` starts its scale
  (gamma) at 0 (Goyal et al. 2017's zero-gamma)."""
  scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
  return NORMS.get(kind)(train, name, channels, scale_init)


def stride2_layers(depth: int, downsample: int) -> frozenset[int]:
  """Indices of the stride-2 convolutions: floor((k + 1) * depth / (downsample + 1))."""
  n = min(max(int(downsample), 0), int(depth))
  return frozenset((k + 1) * depth // (n + 1) for k in range(n))


class ConvUnit(nn.Module):
  """One convolution and its optional normalization; returns the pre-activation."""

  features: int
  kernel_size: int
  stride: int
  norm: str
  use_bias: bool
  init_family: str
  zero_scale: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = nn.Conv(self.features, (self.kernel_size, self.kernel_size),
                strides=(self.stride, self.stride), padding="SAME", use_bias=self.use_bias,
                kernel_init=INIT_FAMILIES.get(self.init_family), bias_init=unit_bias_init,
                name="conv")(x)
    norm = make_norm(self.norm, train, "norm", self.features, self.zero_scale)
    return h if norm is None else norm(h)


class _Trunk(nn.Module):
  """Shared fields and the conv stack; subclasses add heads in their __call__."""

  depth: int
  width: int
  num_outputs: int
  kernel_size: int = 3
  downsample: int = 2
  activation: str = "tanh"
  norm: str = "none"
  use_bias: bool = True
  init_family: str = "lecun"

  def trunk(self, x_BxHxWxC: jax.Array, train: bool) -> jax.Array:
    act = ACTIVATIONS.get(self.activation)
    strided = stride2_layers(self.depth, self.downsample)
    h = x_BxHxWxC
    for i in range(self.depth):
      h = ConvUnit(self.width, self.kernel_size, 2 if i in strided else 1, self.norm,
                   self.use_bias, self.init_family, name=f"conv_{i}")(h, train)
      self.sow("intermediates", f"conv_{i}_finite", jnp.all(jnp.isfinite(h)))
      h = act(h)
    return h

  def dense(self, features: int, name: str) -> nn.Dense:
    return nn.Dense(features, self.use_bias, kernel_init=INIT_FAMILIES.get(self.init_family),
                    bias_init=unit_bias_init, name=name)


class CNN(_Trunk):
  """The plain CNN classifier: trunk, global average pool, Dense readout."""

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    h = self.trunk(as_image(x_BxHxWxC), train)
    return self.dense(self.num_outputs, "readout")(h.mean(axis=(1, 2)))


class CNNLocalizer(_Trunk):
  """Trunk, flatten, and two heads: class logits and a box (x0, y0, x1, y1)."""

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    h = self.trunk(as_image(x_BxHxWxC), train)
    h = h.reshape(h.shape[0], -1)
    box = self.dense(4, "box_head")(h)
    return {"logits": self.dense(self.num_outputs, "readout")(h), "box": box}


def as_image(x: jax.Array) -> jax.Array:
  """(B, H, W) grey images get a channel axis; (B, H, W, C) pass through."""
  if x.ndim == 3:
    return x[..., None]
  if x.ndim != 4:
    raise ConfigError(f"convolutional models take images (B, H, W[, C]); got inputs of shape "
                      f"{tuple(x.shape)}: choose an image dataset (digits, mnist, cifar10, ...)")
  return x


def check_norm(model_cfg: Any) -> str:
  """model.norm, checked against `NORMS` (one ConfigError listing the known ones)."""
  NORMS.get(model_cfg.norm)
  return str(model_cfg.norm)


def trunk_kwargs(model_cfg: Any, init_family: str, num_outputs: int) -> dict[str, Any]:
  if int(model_cfg.kernel_size) < 1:
    raise ConfigError(f"config key 'model.kernel_size' must be positive, got "
                      f"{model_cfg.kernel_size}")
  if int(model_cfg.downsample) < 0:
    raise ConfigError(f"config key 'model.downsample' must be >= 0, got {model_cfg.downsample}")
  return dict(depth=int(model_cfg.depth), width=int(model_cfg.width), num_outputs=num_outputs,
              kernel_size=int(model_cfg.kernel_size), downsample=int(model_cfg.downsample),
              activation=model_cfg.activation, norm=check_norm(model_cfg),
              use_bias=bool(model_cfg.use_bias), init_family=init_family)


def conv_layer_names(depth: int) -> list[str]:
  return [f"conv_{i}" for i in range(depth)]


@MODELS.register("cnn")
def build_cnn(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  convs = conv_layer_names(int(model_cfg.depth))
  return Model(CNN(**trunk_kwargs(model_cfg, init_family, num_outputs)),
               [*convs, "readout"], hidden_layers=tuple(convs))


@MODELS.register("cnn_localizer")
def build_cnn_localizer(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  convs = conv_layer_names(int(model_cfg.depth))  # the trunk; the two heads are not hidden
  return Model(CNNLocalizer(**trunk_kwargs(model_cfg, init_family, num_outputs)),
               [*convs, "box_head", "readout"], hidden_layers=tuple(convs))
