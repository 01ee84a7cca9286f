"""An optimizer's numbers as a run uses them: set, else its own default, else shared.

The config's optimizer numbers (`gradlab.optim.registry.OPTIMIZER_HPARAMS`: learning
rate, betas, eps, ...) are ``ml_collections`` placeholders: None means NOT SET, so a
value the config file, a ``--config.optimizer.KEY`` flag or a sweep axis sets (even one
equal to the shared default) is told apart from an unset one. Each point resolves them,
in this order (`resolve_numbers`):

1. the set value (``config``: the config file or a flag; ``axis``: a sweep axis);
2. the optimizer's paper default (``paper``: `OptimizerInfo.defaults`, e.g. lion's
   b2 = 0.99, Chen et al. 2023; adadelta's lr = 1.0, Zeiler 2012);
3. a default that is a fraction of ``train.steps`` (``steps_fraction``: gadam's
   average_start = train.steps // 2);
4. the shared default (``shared``: `OPTIMIZER_HPARAMS`).

Adam's paper numbers (Kingma and Ba 2015: lr 1e-3, b1 0.9, b2 0.999, eps 1e-8) ARE the
shared defaults, and sgd reads only the learning rate, so their runs are unchanged.
The plan (`gradlab.sweep.grid.make_plan`) resolves every point, config.json records the
numbers and their sources per group (`group_numbers`), and the result rows carry an
``optimizer.<key>`` column for each number that differs between rows (`number_columns`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

from gradlab.optim.chain import HPARAM_DEFAULTS
from gradlab.optim.registry import OPTIMIZER_HPARAMS, OPTIMIZER_INFO

# The config's optimizer numbers, dotted.
NUMBER_KEYS: tuple[str, ...] = tuple(f"optimizer.{k}" for k in OPTIMIZER_HPARAMS)

# Where a resolved number came from, in the order they are tried.
SOURCES = ("config", "axis", "paper", "steps_fraction", "shared")


class OptimizerNumbers(NamedTuple):
  """One point's optimizer numbers: `values` (every key of `OPTIMIZER_HPARAMS` -> the
  value used) and `sources` (key -> one of `SOURCES`)."""

  values: dict[str, float]
  sources: dict[str, str]


def paper_hparams(name: str, steps: int | None = None) -> dict[str, float]:
  """`HPARAM_DEFAULTS` with optimizer `name`'s paper defaults laid over it, and, given
  ``steps`` (train.steps), its defaults that are a fraction of the run's length."""
  info = OPTIMIZER_INFO.get(name)
  out = {**HPARAM_DEFAULTS, **info.defaults}
  if steps is not None:
    out.update({k: float(math.floor(steps * f)) for k, f in info.steps_fraction.items()})
  return out


def resolve_numbers(name: str, given: Mapping[str, Any], steps: int,
                    axes: Collection[str] = ()) -> OptimizerNumbers:
  """Optimizer `name`'s numbers at one point: `given` maps short keys to the set value
  or None (not set), `steps` is train.steps, `axes` the short keys a sweep axis sets."""
  info = OPTIMIZER_INFO.get(name)
  paper = paper_hparams(name, steps)
  values, sources = {}, {}
  for key in OPTIMIZER_HPARAMS:
    value = given.get(key)
    if value is not None:
      values[key], sources[key] = float(value), "axis" if key in axes else "config"
      continue
    values[key] = paper[key]
    sources[key] = ("paper" if key in info.defaults else
                    "steps_fraction" if key in info.steps_fraction else "shared")
  return OptimizerNumbers(values, sources)


def resolve_point(flat: Mapping[str, Any], axes: Collection[str] = ()
                  ) -> tuple[dict[str, Any], OptimizerNumbers]:
  """A flattened point (dotted keys: optimizer.name, train.steps, optimizer.<key> or
  None) with its unset optimizer numbers filled in, and the numbers with their sources;
  `axes` are the dotted keys a sweep axis sets."""
  numbers = resolve_numbers(
    str(flat["optimizer.name"]), {k: flat.get(f"optimizer.{k}") for k in OPTIMIZER_HPARAMS},
    int(flat["train.steps"]), {a.split(".", 1)[1] for a in axes if a.startswith("optimizer.")})
  return {**flat, **{f"optimizer.{k}": v for k, v in numbers.values.items()}}, numbers


def used_numbers(name: str, hparams: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
  """Per key of `OPTIMIZER_HPARAMS`, the values optimizer `name` used at each lane of
  `hparams` (short key -> per-lane values), NaN where `name` does not read the key."""
  reads = set(OPTIMIZER_INFO.get(name).reads)
  n = len(next(iter(hparams.values()), []))
  return {k: [float(v) for v in hparams[k]] if k in reads else [math.nan] * n
          for k in OPTIMIZER_HPARAMS}


def number_columns(groups: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
                   skip: Collection[str] = ()) -> list[dict[str, list[float]]]:
  """Result columns ``optimizer.<key>`` for the numbers that differ between rows.

  `groups` holds, per group, (optimizer name, short key -> per-lane values). A key gets
  a column when two rows USED different values of it (rows whose optimizer does not
  read the key hold NaN and do not count); keys in `skip` (dotted; the sweep axes,
  which are columns already) get none. Returns, per group, column -> per-lane values.
  """
  used = [used_numbers(name, hp) for name, hp in groups]
  keys = [k for k in OPTIMIZER_HPARAMS if f"optimizer.{k}" not in skip
          and len({v for u in used for v in u[k] if not math.isnan(v)}) > 1]
  return [{f"optimizer.{k}": u[k] for k in keys} for u in used]


def group_numbers(name: str, hparams: Mapping[str, Sequence[float]],
                  sources: Mapping[str, str]) -> dict[str, Any]:
  """What config.json records for one group: the optimizer, and per key it reads the
  value used (a list where the lanes differ: an axis) and its source (`SOURCES`)."""
  used = used_numbers(name, hparams)
  out: dict[str, Any] = {}
  for key in OPTIMIZER_INFO.get(name).reads:
    distinct = sorted(set(used[key]))
    out[key] = {"value": distinct[0] if len(distinct) == 1 else distinct,
                "source": sources[key]}
  return {"optimizer": name, "numbers": out}
