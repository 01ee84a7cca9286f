"""Plain convolutional networks: a classifier ('cnn') and a localizer ('cnn_localizer').

Both share one trunk: ``depth`` 'SAME'-padded convolutions of ``width`` channels and a
``kernel_size`` x ``kernel_size`` kernel (``kernel_size`` taps with ``model.conv_dims`` =
1), each followed by an optional normalization
(``model.norm``: none | batch | layer | group, see `NORMS`) and the activation
(`gradlab.models.activations`). ``model.downsample`` of the convolutions have stride 2
(the rest stride 1): conv i has stride 2 when i is one of

    i_k = floor((k + 1) * depth / (downsample + 1)),   k = 0 .. min(downsample, depth) - 1,

i.e. spread evenly through the stack (depth 12, downsample 2: convs 4 and 8; depth 3,
downsample 3: every conv). Channel counts stay ``width`` throughout, the setting of the
mean-field analysis of CNNs (Xiao et al. 2018), so ``sigma_w`` has the same meaning at
every layer.

``model.conv_dims`` is the number of spatial axes the convolutions slide over: 2 (the
default) takes images (B, H, W[, C]), 1 takes sequences (B, L[, C]) (1-D convolutions, as
the CNN of MNIST-1D: Greydanus & Kobak 2020, "Scaling down deep learning"); a missing
channel axis is added. Kernels are (k, k, C_in, C_out) or (k, C_in, C_out).

- 'cnn': trunk, ``model.pool`` (`POOLS`: ``mean``, the global average pool, the default;
  ``flatten``, which keeps where things are, as MNIST-1D's CNN), Dense ``readout``:
  logits (B, K).
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
  conv_dims=2,  # spatial axes: 2 = images (B, H, W[, C]), 1 = sequences (B, L[, C])
  pool="mean",  # cnn: mean | flatten (`POOLS`)
), family="cnn")
CONV_DIMS = (1, 2)

# GroupNorm's group count: gcd(GROUPS, channels) (Wu & He 2018 use 32 groups; gradlab's
# lab-scale widths are 8..64 channels).
GROUPS = 8

# name -> (train, name, channels, scale_init, dims) -> a normalization module, or None
# (dims: the feature map's spatial axes, `CONV_DIMS`).
NormFactory = Callable[[bool, str, int, Callable[..., jax.Array], int], "nn.Module | None"]
NORMS: Registry[NormFactory] = Registry("normalization")
NORMS.register("none")(lambda train, name, channels, scale_init, dims: None)
# Ioffe & Szegedy 2015: statistics of the minibatch in training (the collection
# 'batch_stats' keeps running averages), the running averages in evaluation.
NORMS.register("batch")(lambda train, name, channels, scale_init, dims: nn.BatchNorm(
  use_running_average=not train, momentum=0.9, epsilon=1e-5, scale_init=scale_init,
  name=name))
# Ba et al. 2016, over each example's whole feature map ((H, W, C) or (L, C)).
NORMS.register("layer")(lambda train, name, channels, scale_init, dims: nn.LayerNorm(
  reduction_axes=tuple(range(-dims - 1, 0)), scale_init=scale_init, name=name))
# Wu & He 2018 (over every non-batch axis, whatever dims).
NORMS.register("group")(lambda train, name, channels, scale_init, dims: nn.GroupNorm(
  num_groups=math.gcd(GROUPS, channels), scale_init=scale_init, name=name))

# How the 'cnn' classifier turns its last feature map (B, *spatial, C) into features.
POOLS: Registry[Callable[[jax.Array], jax.Array]] = Registry("model.pool")
POOLS.register("mean")(lambda h: h.mean(axis=tuple(range(1, h.ndim - 1))))
POOLS.register("flatten")(lambda h: h.reshape(h.shape[0], -1))


def make_norm(kind: str, train: bool, name: str, channels: int,
              zero_scale: bool = False, dims: int = 2) -> nn.Module | None:
  """The normalization module `kind` (None for 'none'); `zero_scale` starts its scale
  (gamma) at 0 (Goyal et al. 2017's zero-gamma)."""
  scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
  return NORMS.get(kind)(train, name, channels, scale_init, dims)


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
  dims: int = 2  # spatial axes: 2 for (B, H, W, C), 1 for (B, L, C)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = nn.Conv(self.features, (self.kernel_size,) * self.dims,
                strides=(self.stride,) * self.dims, padding="SAME", use_bias=self.use_bias,
                kernel_init=INIT_FAMILIES.get(self.init_family), bias_init=unit_bias_init,
                name="conv")(x)
    norm = make_norm(self.norm, train, "norm", self.features, self.zero_scale, self.dims)
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
  conv_dims: int = 2
  remat: bool = False  # train.remat: recompute each unit's activations in the backward

  def trunk(self, x: jax.Array, train: bool) -> jax.Array:
    """(B, *spatial[, C]) -> the last feature map (B, *spatial', width)."""
    act = ACTIVATIONS.get(self.activation)
    unit = nn.remat(ConvUnit, static_argnums=(2,)) if self.remat else ConvUnit
    strided = stride2_layers(self.depth, self.downsample)
    h = as_grid(x, self.conv_dims)
    for i in range(self.depth):
      h = unit(self.width, self.kernel_size, 2 if i in strided else 1, self.norm,
               self.use_bias, self.init_family, dims=self.conv_dims, name=f"conv_{i}")(h, train)
      self.sow("intermediates", f"conv_{i}_finite", jnp.all(jnp.isfinite(h)))
      h = act(h)
    return h

  def dense(self, features: int, name: str) -> nn.Dense:
    return nn.Dense(features, self.use_bias, kernel_init=INIT_FAMILIES.get(self.init_family),
                    bias_init=unit_bias_init, name=name)


class CNN(_Trunk):
  """The plain CNN classifier: trunk, pool (`POOLS`), Dense readout."""

  pool: str = "mean"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = self.trunk(x, train)
    return self.dense(self.num_outputs, "readout")(POOLS.get(self.pool)(h))


class CNNLocalizer(_Trunk):
  """Trunk, flatten, and two heads: class logits and a box (x0, y0, x1, y1)."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    h = self.trunk(x, train)
    h = h.reshape(h.shape[0], -1)
    box = self.dense(4, "box_head")(h)
    return {"logits": self.dense(self.num_outputs, "readout")(h), "box": box}


# conv_dims -> (what the inputs are, their shape, datasets that have them)
_GRIDS = {1: ("sequences", "(B, L[, C])", "mnist1d, seq_mnist1d, ..."),
          2: ("images", "(B, H, W[, C])", "digits, mnist, cifar10, ...")}


def as_grid(x: jax.Array, dims: int = 2) -> jax.Array:
  """Inputs with `dims` spatial axes and a channel axis: (B, H, W) grey images (dims 2)
  or (B, L) single-channel sequences (dims 1) get one; (B, H, W, C) and (B, L, C) pass
  through."""
  if x.ndim == dims + 1:
    return x[..., None]
  if x.ndim != dims + 2:
    what, shape, datasets = _GRIDS[dims]
    raise ConfigError(f"convolutional models with model.conv_dims={dims} take {what} {shape};"
                      f" got inputs of shape {tuple(x.shape)}: choose a dataset of {what} "
                      f"({datasets}) or set model.conv_dims")
  return x


def check_norm(model_cfg: Any) -> str:
  """model.norm, checked against `NORMS` (one ConfigError listing the known ones)."""
  NORMS.get(model_cfg.norm)
  return str(model_cfg.norm)


def check_conv_dims(model_cfg: Any) -> int:
  """model.conv_dims, one of `CONV_DIMS` (else one ConfigError)."""
  dims = model_cfg.get("conv_dims", 2)
  if dims not in CONV_DIMS:
    raise ConfigError(f"config key 'model.conv_dims' must be one of "
                      f"{', '.join(map(str, CONV_DIMS))} (spatial axes: 1 for sequences, 2 "
                      f"for images), got {dims}")
  return int(dims)


def trunk_kwargs(model_cfg: Any, init_family: str, num_outputs: int) -> dict[str, Any]:
  if int(model_cfg.kernel_size) < 1:
    raise ConfigError(f"config key 'model.kernel_size' must be positive, got "
                      f"{model_cfg.kernel_size}")
  if int(model_cfg.downsample) < 0:
    raise ConfigError(f"config key 'model.downsample' must be >= 0, got {model_cfg.downsample}")
  return dict(depth=int(model_cfg.depth), width=int(model_cfg.width), num_outputs=num_outputs,
              kernel_size=int(model_cfg.kernel_size), downsample=int(model_cfg.downsample),
              activation=model_cfg.activation, norm=check_norm(model_cfg),
              use_bias=bool(model_cfg.use_bias), init_family=init_family,
              conv_dims=check_conv_dims(model_cfg))


def conv_layer_names(depth: int) -> list[str]:
  return [f"conv_{i}" for i in range(depth)]


@MODELS.register("cnn")
def build_cnn(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  convs = conv_layer_names(int(model_cfg.depth))
  pool = str(model_cfg.get("pool", "mean"))
  POOLS.get(pool)  # one ConfigError listing the known pools
  return Model(CNN(**trunk_kwargs(model_cfg, init_family, num_outputs), pool=pool),
               [*convs, "readout"], hidden_layers=tuple(convs))


@MODELS.register("cnn_localizer")
def build_cnn_localizer(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  convs = conv_layer_names(int(model_cfg.depth))  # the trunk; the two heads are not hidden
  return Model(CNNLocalizer(**trunk_kwargs(model_cfg, init_family, num_outputs)),
               [*convs, "box_head", "readout"], hidden_layers=tuple(convs))
