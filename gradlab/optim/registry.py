"""Base optimizers by name, each with its numeric hyperparameters traced.

An entry of `OPTIMIZERS` maps a mapping of traced hyperparameters (the ``optimizer.*``
numbers of the config) to an optax transformation built through
``optax.inject_hyperparams``, so the learning rate and the other numbers live in the
optimizer state as data, not as compile-time constants: one compile serves every value.

Every optimizer reads its numbers under the SAME shared keys, listed with their shared
defaults in `OPTIMIZER_HPARAMS` (e.g. lion's two betas are ``b1``/``b2``, adadelta's rho
is ``decay``, signum's and muon's momentum is ``momentum``). They are declared here, with
the optimizer name, as the config's traced ``optimizer.*`` numbers of this set, each a
``placeholder(float)`` (None: not set); remedies and schedules declare theirs
(`gradlab.optim.remedies`, `gradlab.optim.schedules`), and `gradlab.optim.HPARAM_DEFAULTS`
holds all of them. `OPTIMIZER_INFO` says, per name, which keys the builder reads, the
paper, the paper's defaults where they differ from the shared ones, and defaults that are
a fraction of ``train.steps`` (gadam's ``average_start``). A number the config leaves
unset takes the optimizer's own default, else the shared one
(`gradlab.optim.resolve_numbers`). ``hp['learning_rate']`` may also be a schedule
``step -> lr`` (see `gradlab.optim.schedules`); every builder passes it through.

Non-numeric options (nesterov, factoring, ...) are fixed per registered name. The entries
live in `gradlab.optim.classic`, `gradlab.optim.adam_family`, `gradlab.optim.contrib` and
`gradlab.optim.gadam`; importing `gradlab.optim` registers them all.

Skipped optax.contrib entries, with reasons: ``simplified_ademamix`` (a variant of the
registered ``ademamix``), and the parameter-free/line-search family (``cocob``, ``dog``,
``dowg``, ``mechanize``, ``momo``, ``dadapt_adamw``, ``sam``, ``sophia``) that the
issue does not ask for; ``sophia``/``sam`` also need extra model calls inside the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import optax
from ml_collections.config_dict import placeholder

from gradlab.config import register_keys
from gradlab.registry import ConfigError, Registry

Hparams = Mapping[str, Any]  # traced scalars; 'learning_rate' may be a schedule
OptimizerBuilder = Callable[[Hparams], optax.GradientTransformation]

# Every traced key the base optimizers read, with its shared default: the value a run uses
# when neither the config nor the optimizer's own defaults (`OptimizerInfo`) set it.
OPTIMIZER_HPARAMS: dict[str, float] = {
  "learning_rate": 1e-3,   # peak learning rate (the schedule's peak)
  "momentum": 0.9,         # heavy-ball / Nesterov / signum / LARS / muon momentum
  "b1": 0.9,               # first-moment EMA rate (Adam family, lion's interpolation)
  "b2": 0.999,             # second-moment EMA rate (lion: momentum EMA rate)
  "b3": 0.9999,            # third rate: ademamix slow EMA, adan second moment
  "alpha": 5.0,            # ademamix: weight of the slow EMA
  "eps": 1e-8,             # denominator regulariser
  "weight_decay": 0.0,     # decoupled (or, for lars/adadelta, the optimizer's own) decay
  "decay": 0.9,            # rmsprop's EMA rate; adadelta's rho
  "decay_rate": 0.8,       # adafactor: beta2_t = 1 - t^(-decay_rate)
  "average_start": 0.0,    # gadam: first step whose iterate enters the average (gadam's
                           # own default: train.steps // 2, `OptimizerInfo.steps_fraction`)
  "average_every": 1.0,    # gadam: average every k-th iterate (k >= 1)
}
# In the config each number is a placeholder (None = not set), so a set value, even one
# equal to the shared default, is told apart from an unset one.
register_keys(
  "optimizer", {"name": "adam", **{k: placeholder(float) for k in OPTIMIZER_HPARAMS}},
  family="optimizer",
  traced=tuple(OPTIMIZER_HPARAMS), positive=("learning_rate", "decay_rate", "average_every"),
  non_negative=("eps", "weight_decay", "alpha", "average_start"),
  unit_interval=("momentum", "b1", "b2", "b3", "decay"))


class OptimizerInfo(NamedTuple):
  """What a registered optimizer reads: `reads` (hp keys), `paper`, `defaults` (the
  paper's values for keys whose shared default does not suit it) and `steps_fraction`
  (keys whose default is this fraction of ``train.steps``, rounded down)."""

  reads: tuple[str, ...]
  paper: str
  defaults: dict[str, float]
  steps_fraction: Mapping[str, float] = MappingProxyType({})


OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
OPTIMIZER_INFO: Registry[OptimizerInfo] = Registry("optimizer")


def register(name: str, reads: Iterable[str], paper: str,
             steps_fraction: Mapping[str, float] | None = None, **defaults: float
             ) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
  """Registers `builder` under `name`; it is handed only the keys in `reads`. `defaults`
  are the paper's numbers (keyword per key), `steps_fraction` the keys whose default is
  a fraction of ``train.steps``."""
  reads = tuple(reads)
  fractions = MappingProxyType(dict(steps_fraction or {}))
  unknown = [k for k in (*reads, *defaults, *fractions) if k not in OPTIMIZER_HPARAMS]
  if unknown:
    raise ValueError(f"optimizer '{name}' uses keys not in OPTIMIZER_HPARAMS: {unknown}")

  def wrap(builder: OptimizerBuilder) -> OptimizerBuilder:
    def build(hp: Hparams) -> optax.GradientTransformation:
      missing = [k for k in reads if k not in hp]
      if missing:
        raise ConfigError(f"optimizer '{name}' needs hyperparameters {missing}; "
                          f"it reads {', '.join(reads)}")
      return builder({k: hp[k] for k in reads})

    build.__doc__, build.__name__ = builder.__doc__, builder.__name__
    OPTIMIZERS.register(name)(build)
    OPTIMIZER_INFO.register(name)(OptimizerInfo(reads, paper, dict(defaults), fractions))
    return build

  return wrap


def inject(factory: Callable[..., optax.GradientTransformation], static_args: tuple = (),
           **hparams: jax.Array | Any) -> optax.GradientTransformationExtraArgs:
  """``optax.inject_hyperparams(factory)(**hparams)``: numbers become state (data)."""
  return optax.inject_hyperparams(factory, static_args=static_args)(**hparams)
