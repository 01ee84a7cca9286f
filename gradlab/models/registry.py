"""The model registry: name -> builder(model_cfg, init_family, num_outputs) -> `Model`.

See docs/extending.md for the whole contract a model meets.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from gradlab.config import register_keys
from gradlab.registry import ConfigError, Registry

# The model section's keys every family reads; each family module declares its own.
MODEL_KEYS: dict[str, Any] = register_keys(
  "model", dict(
    name="mlp", depth=10, width=64, activation="tanh", use_bias=True,
    norm="none",  # none | batch | layer | group | rms (families that support it)
  ), family="models", positive=("depth", "width"))

# path of a parameter (its dict keys) -> the short names of the traced scales that
# multiply it (() or None: unscaled).
ScaleRule = Callable[[tuple[str, ...]], "tuple[str, ...] | None"]
# (variables, x, y, objective) -> {probe name: array}, called at every logged step.
ProbeFn = Callable[[Mapping[str, Any], jax.Array, jax.Array, Callable[..., jax.Array]],
                   Mapping[str, jax.Array]]


class Model(NamedTuple):
  """What a builder returns.

  module: a flax module; ``__call__(x, train: bool = False)`` -> outputs (logits, or a
    dict the loss reads).
  layer_names: ordered names of the top-level parameter collections that the probes
    report per layer; the last is the readout.
  scale_rule: which traced scales multiply which parameter (None: `default_scale_rule`).
  probe_fn: optional gradient probe run at every logged step (docs/extending.md).
  hidden_layers: the layers (a subset of layer_names, in depth order) through which the
    backward pass compounds, so that ||grad first|| / ||grad last|| at init is the depth
    gain the init-time prediction reads (`gradlab.prediction`). () where it means nothing
    (residual streams, recurrence through time, a single layer): the gain is then NaN.
  kind_of: parameter path -> its layer kind ('input', 'hidden', 'output', 'vector',
    'fixed') for ``model.parameterization`` (`gradlab.models.parameterization`); None
    where the family supports only the standard one.
  scaling: the family's `Scaling` at this width (init factors, multipliers); None or
    standard: the init as the family draws it.
  """

  module: nn.Module
  layer_names: list[str]
  scale_rule: ScaleRule | None = None
  probe_fn: ProbeFn | None = None
  hidden_layers: tuple[str, ...] = ()
  kind_of: Callable[[tuple[str, ...]], str] | None = None
  scaling: Any = None


def default_scale_rule(path: tuple[str, ...]) -> tuple[str, ...]:
  """Every 'kernel' x sigma_w, every 'bias' x sigma_b; everything else (norm scales,
    SkipInit gains, embeddings named otherwise) unscaled. Norm layers' biases start at 0,
    so scaling them changes nothing."""
  leaf = path[-1] if path else ""
  return {"kernel": ("sigma_w",), "bias": ("sigma_b",)}.get(leaf, ())


MODELS: Registry[Callable[..., Model]] = Registry("model")


def build_model(cfg: Any, num_outputs: int) -> Model:
  """The `Model` of a whole config: ``builder(cfg.model, cfg.init.family, num_outputs)``,
  plus ``init_cfg=cfg.init`` for builders that read more of the init section (the
  recurrent family, the LSTM forget bias). With ``train.remat`` the module's blocks are
  rematerialized (`with_remat`)."""
  builder = MODELS.get(cfg.model.name)
  if "init_cfg" in inspect.signature(builder).parameters:
    model = builder(cfg.model, cfg.init.family, num_outputs, init_cfg=cfg.init)
  else:
    model = builder(cfg.model, cfg.init.family, num_outputs)
  remat = "train" in cfg and bool(cfg.train.get("remat", False))
  return with_remat(model, cfg.model.name) if remat else model


def with_remat(model: Model, name: str) -> Model:
  """`model` whose blocks are ``nn.remat`` (``jax.checkpoint``): each block keeps only
  its input for the backward pass and recomputes its activations there, so a deep
  model's lanes need less memory for one more forward per step. Families whose module
  has a ``remat`` field support it (resnet and cnn: per residual block / conv unit;
  transformer: per block); the others are a ConfigError."""
  fields = getattr(type(model.module), "__dataclass_fields__", {})
  if "remat" not in fields:
    raise ConfigError(f"config key 'train.remat' is on but model '{name}' has no blocks to "
                      f"rematerialize (the resnet, cnn and transformer families do)")
  return model._replace(module=model.module.clone(remat=True))
