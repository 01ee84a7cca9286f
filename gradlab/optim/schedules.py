"""Learning-rate schedules whose every number (peak, warmup length, total) is traced.

A schedule is a pure function ``step -> lr`` closed over traced scalars; the chain
builder hands it to the base optimizer as ``hp['learning_rate']``, and
``optax.inject_hyperparams`` evaluates it on its own step count (it keeps the value it
used in ``state.hyperparams['learning_rate']``). Because the numbers are tracers closed
over inside the traced ``run``, changing them never recompiles.

`SCHEDULES` maps a name to ``hp -> learning rate`` (a traced scalar or a schedule):

- ``constant``: lr(t) = learning_rate. Reads learning_rate.
- ``linear_warmup``: lr(t) = learning_rate * min(1, t / warmup_steps) (= learning_rate
  when warmup_steps <= 0). Reads learning_rate, warmup_steps.
- ``warmup_cosine``: linear warmup to learning_rate over warmup_steps, then cosine decay
  to 0 at decay_steps (warmup included; Loshchilov and Hutter 2017, "SGDR", eq. 5 with
  eta_min = 0 and no restarts; Goyal et al. 2017 for the warmup). Reads learning_rate,
  warmup_steps, decay_steps.

Step t counts the updates already applied (the first update uses t = 0, so a warmup
starts from lr 0, as optax's warmup schedules do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradlab.config import register_keys
from gradlab.optim.registry import Hparams
from gradlab.registry import Registry

Schedule = Callable[[jax.Array], jax.Array]

# Every traced key the schedules read, with its documented default.
SCHEDULE_HPARAMS: dict[str, float] = {
  "warmup_steps": 0.0,     # linear warmup length in steps
  "decay_steps": 1000.0,   # cosine: total steps (warmup included) to reach 0
}
# The config's ``optimizer.schedule`` names one of `SCHEDULES`; its ``decay_steps`` is 0,
# which means ``train.steps`` (`gradlab.config.traced_values` resolves it).
register_keys(
  "optimizer", {"schedule": "constant", **SCHEDULE_HPARAMS, "decay_steps": 0.0},
  family="schedules", traced=tuple(SCHEDULE_HPARAMS),
  non_negative=("warmup_steps", "decay_steps"))


def _warmup_fraction(step: jax.Array, warmup_steps: Any) -> jax.Array:
  """min(1, t / w), and 1 when w <= 0 (no warmup)."""
  t = jnp.asarray(step, jnp.float32)
  w = jnp.asarray(warmup_steps, jnp.float32)
  has_warmup = w > 0
  return jnp.where(has_warmup, jnp.minimum(1.0, t / jnp.where(has_warmup, w, 1.0)), 1.0)


def linear_warmup(peak: Any, warmup_steps: Any) -> Schedule:
  """lr(t) = peak * min(1, t / warmup_steps): linear warmup (Goyal et al. 2017,
  "Accurate, large minibatch SGD", Section 2.2), then constant."""

  def schedule(step: jax.Array) -> jax.Array:
    return peak * _warmup_fraction(step, warmup_steps)

  return schedule


def warmup_cosine(peak: Any, warmup_steps: Any, decay_steps: Any) -> Schedule:
  """Linear warmup to `peak`, then lr(t) = peak * (1 + cos(pi * s)) / 2 with
  s = min(1, (t - w) / (T - w)), T = decay_steps (warmup included): 0 from T on."""

  def schedule(step: jax.Array) -> jax.Array:
    t = jnp.asarray(step, jnp.float32)
    w = jnp.maximum(jnp.asarray(warmup_steps, jnp.float32), 0.0)
    span = jnp.asarray(decay_steps, jnp.float32) - w
    s = jnp.clip((t - w) / jnp.where(span > 0, span, 1.0), 0.0, 1.0)
    s = jnp.where(span > 0, s, jnp.where(t >= w, 1.0, 0.0))
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * s))
    return peak * jnp.where(t < w, _warmup_fraction(t, w), cosine)

  return schedule


class ScheduleEntry(NamedTuple):
  """reads: the hp keys the schedule uses; build: hp -> lr (scalar or schedule)."""

  reads: tuple[str, ...]
  build: Callable[[Hparams], Any]


SCHEDULES: Registry[ScheduleEntry] = Registry("schedule")
SCHEDULES.register("constant")(
  ScheduleEntry(("learning_rate",), lambda hp: hp["learning_rate"]))
SCHEDULES.register("linear_warmup")(
  ScheduleEntry(("learning_rate", "warmup_steps"),
                lambda hp: linear_warmup(hp["learning_rate"], hp["warmup_steps"])))
SCHEDULES.register("warmup_cosine")(
  ScheduleEntry(("learning_rate", "warmup_steps", "decay_steps"),
                lambda hp: warmup_cosine(hp["learning_rate"], hp["warmup_steps"],
                                         hp["decay_steps"])))
