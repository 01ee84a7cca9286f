"""Config -> optax chain: remedy stages, schedule, base optimizer, guards.

The chain's SHAPE is static: the optimizer name, the remedy names in order, the schedule
name, whether non-finite steps are skipped. Every number in it (learning rate, betas,
thresholds, warmup length, ...) is traced: ``build_optimizer(...)`` returns
``make(hp) -> transformation``, called inside the traced ``run``.

The assembled transformation is, from the inside out::

    chain(*pre_stages, base_optimizer(hp with lr <- schedule), *post_stages)
    wrapped by each guard in the order listed, then by skip_nonfinite (outermost)

Remedies (`REMEDIES`; name: kind, hp keys read):

- ``global_norm``: pre, ``clip`` -- global-norm clipping (Pascanu et al. 2013)
- ``value``: pre, ``clip_value`` -- per-entry value clipping
- ``agc``: pre, ``agc_clip`` -- unit-wise adaptive clipping (Brock et al. 2021), eps 1e-3
- ``layer_norm``: pre, ``layer_clip`` -- each top-level layer clipped to its own norm
- ``weight_decay``: post, ``weight_decay`` (and the scheduled lr) -- decoupled decay;
  for optimizers without their own (sgd, momentum, adam, ...): adamw & co. would decay twice
- ``loss_spike``: guard, ``spike_factor``, ``spike_decay`` -- needs ``value=loss``
- ``skip_nonfinite``: guard (always outermost), no key

The step calls ``tx.update(grads, opt_state, params, value=loss)``; ``value`` is
ignored by every stage but ``loss_spike``, so passing it always is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import optax
from optax import contrib

from gradlab.optim import guards, remedies
from gradlab.optim.gadam import IterateAverageState, averaged_params
from gradlab.optim.registry import OPTIMIZER_INFO, OPTIMIZERS, Hparams
from gradlab.optim.schedules import SCHEDULES
from gradlab.registry import ConfigError, Registry

Builder = Callable[[Hparams], optax.GradientTransformationExtraArgs]


class Remedy(NamedTuple):
  """kind: 'pre' (before the base optimizer), 'post' (after it) or 'guard' (wraps the
  chain). reads: hp keys. build: hp -> stage ('pre'/'post'), (hp, inner) -> guard."""

  kind: str
  reads: tuple[str, ...]
  build: Callable[..., optax.GradientTransformation]


REMEDIES: Registry[Remedy] = Registry("remedy")
REMEDIES.register("global_norm")(
  Remedy("pre", ("clip",), lambda hp: remedies.clip_by_global_norm(hp["clip"])))
REMEDIES.register("value")(
  Remedy("pre", ("clip_value",), lambda hp: remedies.clip_by_value(hp["clip_value"])))
REMEDIES.register("agc")(
  Remedy("pre", ("agc_clip",), lambda hp: remedies.adaptive_clip(hp["agc_clip"])))
REMEDIES.register("layer_norm")(
  Remedy("pre", ("layer_clip",), lambda hp: remedies.clip_by_layer_norm(hp["layer_clip"])))
REMEDIES.register("weight_decay")(
  Remedy("post", ("weight_decay",), lambda hp: remedies.decoupled_weight_decay(
    hp["learning_rate"], hp["weight_decay"])))
REMEDIES.register("loss_spike")(
  Remedy("guard", ("spike_factor", "spike_decay"), lambda hp, inner: guards.loss_spike(
    inner, hp["spike_factor"], hp["spike_decay"])))
REMEDIES.register("skip_nonfinite")(
  Remedy("guard", (), lambda hp, inner: guards.skip_nonfinite(inner)))


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


_EVAL_RULES: dict[str, Callable[[optax.OptState, Any], Any]] = {
  "schedule_free_adamw": _schedule_free_eval,
  "schedule_free_sgd": _schedule_free_eval,
  "gadam": _gadam_eval,
}


def eval_params(name: str, opt_state: optax.OptState, params: Any) -> Any:
  """The parameters to evaluate with after training optimizer `name` from `opt_state`:
  schedule-free's x sequence (optax's ``schedule_free_eval_params``) for
  ``schedule_free_*``, Gadam's iterate average for ``gadam`` (the current params before
  the averaging starts), and `params` itself for every other optimizer."""
  OPTIMIZERS.get(name)
  rule = _EVAL_RULES.get(name)
  return params if rule is None else rule(opt_state, params)


skip_count = guards.skip_count
