"""Config -> optax chain: remedy stages, schedule, base optimizer, guards.

The chain's SHAPE is static: the optimizer name, the remedy names in order, the schedule
name, whether non-finite steps are skipped. Every number in it (learning rate, betas,
thresholds, warmup length, ...) is traced: ``build_optimizer(...)`` returns
``make(hp) -> transformation``, called inside the traced ``run``.

The assembled transformation is, from the inside out::

    chain(*pre_stages, base_optimizer(hp with lr <- schedule), *post_stages)
    wrapped by each guard in the order listed, then by skip_nonfinite (outermost)

The remedies (`gradlab.optim.remedies.REMEDIES`) are listed with their stages. Every
number any chain reads has its documented default in `HPARAM_DEFAULTS`: the base
optimizers', the remedies' and the schedules' own tables, each declared beside its
builders.

The step calls ``tx.update(grads, opt_state, params, value=loss)``; ``value`` is
ignored by every stage but ``loss_spike``, so passing it always is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import optax
from optax import contrib

from gradlab.optim import guards
from gradlab.optim.gadam import IterateAverageState, averaged_params
from gradlab.optim.registry import OPTIMIZER_HPARAMS, OPTIMIZER_INFO, OPTIMIZERS, Hparams
from gradlab.optim.remedies import REMEDIES, REMEDY_HPARAMS
from gradlab.optim.schedules import SCHEDULE_HPARAMS, SCHEDULES
from gradlab.registry import ConfigError

Builder = Callable[[Hparams], optax.GradientTransformationExtraArgs]


# Every traced number a chain reads, with its documented default (the config's own
# defaults differ for ``clip``, 0 = off, and ``decay_steps``, 0 = train.steps).
HPARAM_DEFAULTS: dict[str, float] = {**OPTIMIZER_HPARAMS, **REMEDY_HPARAMS, **SCHEDULE_HPARAMS}


def _remedy_names(remedy_names: Sequence[str], clip_enabled: bool,
                  skip_nonfinite: bool) -> tuple[str, ...]:
  if isinstance(remedy_names, str):
    raise ConfigError(f"remedies must be a list of names, got the string {remedy_names!r}")
  names = tuple(remedy_names)
  skip_nonfinite = skip_nonfinite or "skip_nonfinite" in names
  if clip_enabled and "global_norm" not in names:
    names = ("global_norm", *names)
  names = tuple(n for n in names if n != "skip_nonfinite")
  if skip_nonfinite:
    names = (*names, "skip_nonfinite")
  for name in names:
    REMEDIES.get(name)  # ConfigError for an unknown name, before any compile
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ConfigError(f"remedy {repeated[0]!r} is listed twice")
  return names


def build_optimizer(name: str, clip_enabled: bool = False, *,
                    remedies: Sequence[str] = (), schedule: str = "constant",
                    skip_nonfinite: bool = False) -> Builder:
  """Returns ``make(hp) -> transformation`` for a static chain structure.

  Args:
    name: a registered optimizer (`OPTIMIZERS`).
    clip_enabled: shorthand for a leading 'global_norm' remedy (reads ``hp['clip']``).
    remedies: remedy names (`REMEDIES`); pre/post stages keep this order, guards wrap
      in this order (the first listed is innermost).
    schedule: a `SCHEDULES` name; it becomes the base optimizer's learning rate.
    skip_nonfinite: wrap everything in `guards.skip_nonfinite` (outermost).

  Unknown names raise `ConfigError` here, before anything is traced.
  """
  base = OPTIMIZERS.get(name)
  sched = SCHEDULES.get(schedule)
  entries = [REMEDIES.get(n) for n in _remedy_names(remedies, clip_enabled, skip_nonfinite)]

  def make(hp: Hparams) -> optax.GradientTransformationExtraArgs:
    hp_lr = {**hp, "learning_rate": sched.build(hp)}
    pre = [r.build(hp) for r in entries if r.kind == "pre"]
    post = [r.build(hp_lr) for r in entries if r.kind == "post"]
    stages = [*pre, base(hp_lr), *post]
    tx = optax.chain(*stages) if len(stages) > 1 else stages[0]
    for r in entries:
      if r.kind == "guard":
        tx = r.build(hp, tx)
    return optax.with_extra_args_support(tx)

  return make


def chain_hparam_keys(name: str, clip_enabled: bool = False, *,
                      remedies: Sequence[str] = (), schedule: str = "constant",
                      skip_nonfinite: bool = False) -> tuple[str, ...]:
  """The hp keys the chain of `build_optimizer` with these arguments reads, sorted."""
  names = _remedy_names(remedies, clip_enabled, skip_nonfinite)
  keys = {*OPTIMIZER_INFO.get(name).reads, *SCHEDULES.get(schedule).reads}
  for n in names:
    keys.update(REMEDIES.get(n).reads)
  return tuple(sorted(keys))


def _schedule_free_eval(opt_state: optax.OptState, params: Any) -> Any:
  state = next(guards.find_states(opt_state, contrib.ScheduleFreeState))
  return contrib.schedule_free_eval_params(state, params)


def _gadam_eval(opt_state: optax.OptState, params: Any) -> Any:
  return averaged_params(next(guards.find_states(opt_state, IterateAverageState)), params)


class EvalRule(NamedTuple):
  """Which parameters an optimizer is evaluated with: a name for the result column
  `eval_params` and the function (opt_state, params) -> those parameters."""

  name: str
  params: Callable[[optax.OptState, Any], Any]


_EVAL_RULES: dict[str, EvalRule] = {
  "schedule_free_adamw": EvalRule("schedule_free", _schedule_free_eval),
  "schedule_free_sgd": EvalRule("schedule_free", _schedule_free_eval),
  "gadam": EvalRule("iterate_average", _gadam_eval),
}


def eval_params(name: str, opt_state: optax.OptState, params: Any) -> Any:
  """The parameters to evaluate with after training optimizer `name` from `opt_state`:
  schedule-free's x sequence (optax's ``schedule_free_eval_params``) for
  ``schedule_free_*``, Gadam's iterate average for ``gadam`` (the current params before
  the averaging starts), and `params` itself for every other optimizer."""
  OPTIMIZERS.get(name)
  rule = _EVAL_RULES.get(name)
  return params if rule is None else rule.params(opt_state, params)


def evaluated_with(name: str) -> str:
  """The name of the parameters `eval_params` returns for optimizer `name`: the rule's
  name (``schedule_free``, ``iterate_average``), else ``last`` (the final iterate)."""
  rule = _EVAL_RULES.get(name)
  return "last" if rule is None else rule.name


skip_count = guards.skip_count
