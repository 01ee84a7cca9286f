"""Grid expansion: axes -> points -> validated groups of equal static structure -> chunks.

Everything here is plain Python and runs before any compile, so bad input fails early
with one clear `ConfigError`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ml_collections as mlc
import numpy as np

from gradlab import config as config_lib
from gradlab.config import STAGE_SWITCHES, TRACED_KEYS
from gradlab.data import DATASETS
from gradlab.losses import LOSSES
from gradlab.models import ACTIVATIONS, INIT_FAMILIES, MODELS
from gradlab.optim import OPTIMIZERS, SCHEDULES, build_optimizer
from gradlab.registry import ConfigError
from gradlab.train import HPARAM_NAMES

# Static keys that name a registry entry, checked for every group.
_NAMED = (("model.name", MODELS.get), ("model.activation", ACTIVATIONS.get),
          ("init.family", INIT_FAMILIES.get), ("optimizer.name", OPTIMIZERS.get),
          ("optimizer.schedule", SCHEDULES.get), ("data.name", DATASETS.get),
          ("train.loss", LOSSES.get),
          ("optimizer.remedies",
           lambda text: build_optimizer("sgd", remedies=config_lib.parse_remedies(text))))


@dataclass
class Group:
  """Points of one static structure: compiled once, run as lanes of jit(vmap(run))."""

  index: int
  cfg: mlc.ConfigDict                 # the config of the group's first point
  run_ids: list[int] = field(default_factory=list)
  hparams: dict[str, list[float]] = field(default_factory=dict)
  seeds: list[int] = field(default_factory=list)
  axis_values: list[dict[str, Any]] = field(default_factory=list)

  def __len__(self) -> int:
    return len(self.run_ids)


@dataclass
class Plan:
  axes: list[str]
  groups: list[Group]

  @property
  def n_points(self) -> int:
    return sum(len(g) for g in self.groups)


@dataclass
class Chunk:
  """`size` real lanes padded to `padded` lanes by repeating the last point."""

  group: int
  index: int
  run_ids: np.ndarray
  hparams: dict[str, np.ndarray]
  seeds: np.ndarray
  axis_values: list[dict[str, Any]]
  size: int


def _static_signature(flat: dict[str, Any]) -> tuple:
  items = [(k, v) for k, v in flat.items() if k not in TRACED_KEYS and k != "sweep.axes"]
  items += [(f"{k}>0", flat[k] > 0) for k in STAGE_SWITCHES]
  return tuple(sorted(items))


def make_plan(cfg: mlc.ConfigDict) -> Plan:
  """Validates `cfg` and its whole grid, then groups points by static structure."""
  config_lib.check_keys(cfg)
  axes = list(cfg.sweep.axes.keys())
  base = config_lib.flatten(cfg)
  value_lists = []
  for key in axes:
    value_lists.append([config_lib.coerce(key, base[key], v) for v in cfg.sweep.axes[key]])
  groups: dict[tuple, Group] = {}
  checked_names: set[tuple[str, Any]] = set()
  for run_id, combo in enumerate(itertools.product(*value_lists)):
    overrides = dict(zip(axes, combo, strict=True))
    flat = {**base, **overrides}
    config_lib.check_values(flat)
    for key, check in _NAMED:
      if (key, flat[key]) not in checked_names:
        check(flat[key])
        checked_names.add((key, flat[key]))
    sig = _static_signature(flat)
    if sig not in groups:
      groups[sig] = Group(index=len(groups), cfg=config_lib.with_overrides(cfg, overrides),
                          hparams={name: [] for name in HPARAM_NAMES})
    group = groups[sig]
    group.run_ids.append(run_id)
    for short, value in config_lib.traced_values(flat).items():
      group.hparams[short].append(value)
    group.seeds.append(int(flat["train.seed"]))
    group.axis_values.append(overrides)
  return Plan(axes=axes, groups=list(groups.values()))


def chunk_size_for(cfg: mlc.ConfigDict, group: Group) -> int:
  size = int(cfg.sweep.chunk_size)
  if size < 0:
    raise ConfigError(f"config key 'sweep.chunk_size' must be >= 0, got {size}")
  return len(group) if size == 0 else min(size, len(group))


def chunks(group: Group, size: int) -> Iterator[Chunk]:
  """Fixed-size chunks of a group (one compiled shape); the last is padded."""
  n = len(group)
  for index, start in enumerate(range(0, n, size)):
    stop = min(start + size, n)
    take = np.minimum(np.arange(start, start + size), stop - 1)
    yield Chunk(
      group=group.index,
      index=index,
      run_ids=np.asarray(group.run_ids)[take],
      hparams={k: np.asarray(v, np.float32)[take] for k, v in group.hparams.items()},
      seeds=np.asarray(group.seeds)[take],
      axis_values=group.axis_values[start:stop],
      size=stop - start,
    )
