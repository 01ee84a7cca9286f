"""Parameterizations: how each layer's init scale, multiplier and learning rate scale
with width (``model.parameterization``, ``model.base_width``).

The abc-parameterizations of Yang & Hu 2021 ("Tensor Programs IV: Feature Learning in
Infinite-Width Neural Networks", Sec. 3) in the notation of Everett et al. 2024
("Scaling Exponents Across Parameterizations and Optimizers", Sec. 2 and Table 1): a
weight is W = n^-a w with w ~ N(0, n^-2b) and trained at learning rate lr n^-c, n the
width. Three layer kinds: ``input`` (fan-in independent of n: the first Dense, an
embedding), ``hidden`` (n x n), ``output`` (the readout, fan-in n). With full
alignment, the four parameterizations of Everett et al. 2024 (Table 1) are

==============  ===============  ===============  ================  ================
name            a (in/hid/out)   b (in/hid/out)   c SGD             c Adam
==============  ===============  ===============  ================  ================
``standard``    0, 0, 0          0, 1/2, 1/2      0, 0, 0 (global)  0, 0, 0 (global)
``ntk``         0, 1/2, 1/2      0, 0, 0          0, 0, 0           0, 1/2, 1/2
``mup``         0, 0, 1/2        0, 1/2, 1/2      -1, 0, 0          0, 1, 1/2
``mean_field``  0, 1/2, 1        0, 0, 0          -1, -1, -1        0, 1/2, 0
==============  ===============  ===============  ================  ================

``standard`` is gradlab's behaviour before parameterizations existed (He/LeCun init,
one global learning rate), not Everett et al.'s per-layer standard prescription: it
changes nothing (tests hold the rows bit for bit). muP's Adam rates are Tensor
Programs V's (Yang et al. 2022, Table 3: input 1, hidden 1/fan_in, output 1/fan_in with
the output multiplier folded in); its SGD rates Table 3's (input and biases fan_out,
hidden 1, output 1/fan_in). Vectors of width n (hidden biases, normalization scales
and offsets) are input-like (Yang et al. 2022, Table 3: "input weights & all biases");
width-independent vectors (the readout's bias) keep a = b = c = 0.

Everything is relative to a base width n0 (``model.base_width``), as in the `mup`
package: the factors use m = n / n0, so at n = n0 every parameterization is the
standard one and the hyperparameters tuned there transfer. Per parameter:

- init factor m^-(b - b_standard), on top of the init family (whose 1/fan_in already
  gives the standard b);
- multiplier m^-a, applied in the forward pass (`ScaledDense`);
- learning-rate factor m^-c, applied to the optimizer's update (an optax transformation
  after the chain: `lr_scaling`), which is a per-layer learning rate for every optimizer
  whose update is linear in its learning rate (SGD, momentum, the Adam family).

The c column is chosen by the optimizer's update rule: `SGD_LIKE` (the step is
proportional to the gradient) or `ADAPTIVE` (per-coordinate normalized: the Adam
family, sign methods); optimizers in neither (layer-wise trust ratios, orthogonalized
updates, parameter-free) take only ``standard``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gradlab.config import register_keys
from gradlab.registry import ConfigError, Registry

KINDS = ("input", "hidden", "output", "vector", "fixed")
SGD_LIKE = ("sgd", "momentum", "nesterov", "schedule_free_sgd")
ADAPTIVE = ("adam", "adamw", "nadam", "nadamw", "gadam", "amsgrad", "adabelief", "adamax",
            "radam", "yogi", "adan", "adopt", "ademamix", "rmsprop", "adagrad", "lion",
            "sign_sgd", "signum", "schedule_free_adamw", "adam_atan2")

# Standard's b: what the unit-scale init families already give (1/fan_in variance).
_B_STANDARD = {"input": 0.0, "hidden": 0.5, "output": 0.5, "vector": 0.0, "fixed": 0.0}


class Exponents(NamedTuple):
  """Width exponents per layer kind (input, hidden, output); vectors of width n follow
  the input row, width-independent ones ('fixed') are 0."""

  a: tuple[float, float, float]
  b: tuple[float, float, float]
  c_sgd: tuple[float, float, float]
  c_adam: tuple[float, float, float]

  def of(self, field: str, kind: str) -> float:
    row = getattr(self, field)
    return {"input": row[0], "hidden": row[1], "output": row[2], "vector": row[0],
            "fixed": 0.0}[kind]


PARAMETERIZATIONS: Registry[Exponents] = Registry("parameterization")
PARAMETERIZATIONS.register("standard")(Exponents((0, 0, 0), (0, .5, .5), (0, 0, 0), (0, 0, 0)))
PARAMETERIZATIONS.register("ntk")(Exponents((0, .5, .5), (0, 0, 0), (0, 0, 0), (0, .5, .5)))
PARAMETERIZATIONS.register("mup")(Exponents((0, 0, .5), (0, .5, .5), (-1, 0, 0), (0, 1, .5)))
PARAMETERIZATIONS.register("mean_field")(
  Exponents((0, .5, 1), (0, 0, 0), (-1, -1, -1), (0, .5, 0)))


class Scaling(NamedTuple):
  """The static per-kind factors of one model at one width (module docstring)."""

  name: str
  ratio: float                      # m = width / base_width
  init: Mapping[str, float]
  multiplier: Mapping[str, float]
  lr: Mapping[str, float]

  @property
  def is_standard(self) -> bool:
    return self.name == "standard"


def update_rule(optimizer: str) -> str:
  """'sgd' or 'adam': which c column `optimizer` takes (module docstring)."""
  if optimizer in SGD_LIKE:
    return "sgd"
  if optimizer in ADAPTIVE:
    return "adam"
  raise ConfigError(f"config key 'model.parameterization' needs a per-layer learning-rate "
                    f"rule for optimizer '{optimizer}', and it has none (SGD-like: "
                    f"{', '.join(SGD_LIKE)}; adaptive: the Adam family and sign methods); "
                    f"use model.parameterization='standard' with it")


def _check_point(point: Mapping[str, Any]) -> None:
  """model.parameterization is a PARAMETERIZATIONS name and, unless standard, has a
  learning-rate rule for optimizer.name."""
  name = point["model.parameterization"]
  if name not in PARAMETERIZATIONS:
    raise ConfigError(f"config key 'model.parameterization': "
                      f"{PARAMETERIZATIONS.unknown_message(name)}")
  if name != "standard":
    update_rule(point["optimizer.name"])


PARAMETERIZATION_KEYS: dict[str, Any] = register_keys("model", dict(
  parameterization="standard",  # standard | ntk | mup | mean_field (static)
  base_width=64,                # n0: the width at which every parameterization is standard
  readout_zero_init=False,      # the readout kernel starts at 0 (the mup package's option)
), family="parameterization", positive=("base_width",), check=_check_point)


def scaling(name: str, width: int, base_width: int, optimizer: str) -> Scaling:
  """The factors of parameterization `name` at `width` (base `base_width`) for
  `optimizer`'s update rule."""
  exps = PARAMETERIZATIONS.get(name)
  m = float(width) / float(base_width)
  if name == "standard":
    ones = dict.fromkeys(KINDS, 1.0)
    return Scaling(name, m, ones, ones, ones)
  c_field = "c_sgd" if update_rule(optimizer) == "sgd" else "c_adam"
  return Scaling(
    name, m,
    init={k: m ** -(exps.of("b", k) - _B_STANDARD[k]) for k in KINDS},
    multiplier={k: m ** -exps.of("a", k) for k in KINDS},
    lr={k: m ** -exps.of(c_field, k) for k in KINDS})


KindRule = Callable[[tuple[str, ...]], str]


def scale_init(params: Any, s: Scaling, kind_of: KindRule) -> Any:
  """`params` (already at the family's unit scale times sigma_w) times each one's init
  factor; unchanged (the same object) for ``standard``."""
  if s.is_standard:
    return params
  return jax.tree_util.tree_map_with_path(
    lambda path, x: x * s.init[kind_of(_names(path))], params)


def lr_scaling(s: Scaling, kind_of: KindRule) -> optax.GradientTransformation:
  """An optax transformation multiplying each parameter's update by its learning-rate
  factor (to chain after the optimizer)."""

  def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
    del params
    return jax.tree_util.tree_map_with_path(
      lambda path, u: u * jnp.asarray(s.lr[kind_of(_names(path))], u.dtype), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def for_model(model_cfg: Any, optimizer: str = "sgd") -> Scaling:
  """The `Scaling` of a config's ``model`` section (``optimizer`` picks the c column;
  the init factors and multipliers do not depend on it)."""
  return scaling(str(model_cfg.get("parameterization", "standard")), int(model_cfg.width),
                 int(model_cfg.get("base_width", model_cfg.width)), optimizer)


def with_layer_rates(make_tx: Callable[[Any], Any], cfg: Any, kind_of: KindRule | None
                     ) -> Callable[[Any], Any]:
  """``make_tx`` (hp -> optax transformation) followed by the per-layer learning-rate
  factors of ``cfg.model.parameterization`` for ``cfg.optimizer.name``; `make_tx` itself
  under ``standard``."""
  s = for_model(cfg.model, cfg.optimizer.name)
  if s.is_standard:
    return make_tx
  if kind_of is None:
    raise ConfigError(f"config key 'model.parameterization' is '{s.name}' but model "
                      f"'{cfg.model.name}' has no layer kinds (the mlp and transformer "
                      f"families do)")
  scale = optax.with_extra_args_support(lr_scaling(s, kind_of))
  return lambda hp: optax.chain(make_tx(hp), scale)


def _names(path: tuple[Any, ...]) -> tuple[str, ...]:
  return tuple(str(getattr(p, "key", getattr(p, "name", p))) for p in path)


class ScaledDense(nn.Module):
  """A Dense layer whose kernel is multiplied by a static `multiplier` in the forward
  pass (the n^-a of an abc-parameterization): the parameters (``kernel``, ``bias``) and
  their init are nn.Dense's. Models use nn.Dense itself where the multiplier is 1
  (`dense`), so the standard parameterization computes exactly what it did."""

  features: int
  use_bias: bool = True
  multiplier: float = 1.0
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
    y = jnp.dot(x, kernel.astype(x.dtype)) * jnp.asarray(self.multiplier, x.dtype)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
    return y


def dense(features: int, use_bias: bool, multiplier: float, name: str,
          kernel_init: Callable[..., jax.Array], bias_init: Callable[..., jax.Array]
          ) -> nn.Module:
  """nn.Dense where `multiplier` is 1, else `ScaledDense` (same parameter names)."""
  if multiplier == 1.0:
    return nn.Dense(features, use_bias, kernel_init=kernel_init, bias_init=bias_init,
                    name=name)
  return ScaledDense(features, use_bias, multiplier, kernel_init, bias_init, name=name)
