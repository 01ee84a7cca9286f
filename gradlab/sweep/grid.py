"""Grid expansion: axes -> points -> validated groups of equal static structure -> chunks.

Everything here is plain Python and runs before any compile, so bad input fails early
with one clear `ConfigError`. `make_plan` is the ONE validation pass of a sweep: the
keys, the sweep section, every point's values and names, and each group's structure
(its model built, its loss bound). Everything downstream (the executor, `build_run`,
the builders) trusts a plan.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import ml_collections as mlc
import numpy as np

from gradlab import config as config_lib
from gradlab.compile_options import LEVELS
from gradlab.data import AUGMENTATIONS, DATASETS
from gradlab.defaults import KNOWN_KEYS, SCHEMA, STAGE_SWITCHES, TRACED_KEYS
from gradlab.losses import BOX_LOSSES, LOSSES
from gradlab.models import ACTIVATIONS, INIT_FAMILIES, MODELS, build_model
from gradlab.optim import OPTIMIZERS, SCHEDULES, build_optimizer, number_columns, resolve_point
from gradlab.optim.fused import unfusable
from gradlab.optim.paper import NUMBER_KEYS
from gradlab.registry import ConfigError

# Static keys that name a registry entry, checked for every group.
_NAMED = (("model.name", MODELS.get), ("model.activation", ACTIVATIONS.get),
          ("init.family", INIT_FAMILIES.get), ("optimizer.name", OPTIMIZERS.get),
          ("optimizer.schedule", SCHEDULES.get), ("data.name", DATASETS.get),
          ("train.loss", lambda name: name == "auto" or LOSSES.get(name)),
          ("data.augment", AUGMENTATIONS.get), ("train.box_loss", BOX_LOSSES.get),
          ("optimizer.remedies",
           lambda text: build_optimizer("sgd", remedies=config_lib.parse_remedies(text))))
MODES = ("grid", "boundary")


@dataclass
class Group:
  """Points of one static structure: compiled once, run as lanes of jit(vmap(run))."""

  index: int
  cfg: mlc.ConfigDict                 # the config of the group's first point
  run_ids: list[int] = field(default_factory=list)
  hparams: dict[str, list[float]] = field(default_factory=dict)
  seeds: list[int] = field(default_factory=list)
  axis_values: list[dict[str, Any]] = field(default_factory=list)
  extra: dict[str, list[Any]] = field(default_factory=dict)  # more per-point result columns
  # ``sweep.fuse_optimizers``: the optimizers of the groups that share this group's
  # program (`gradlab.optim.fused`), and the group that compiles it (-1: not fused)
  fused: tuple[str, ...] = ()
  fused_with: int = -1

  def __len__(self) -> int:
    return len(self.run_ids)

  def subset(self, positions: Sequence[int]) -> Group:
    """The same group (index, cfg) restricted to the points at `positions`."""
    pos = [int(p) for p in positions]
    return Group(self.index, self.cfg, [self.run_ids[p] for p in pos],
                 {k: [v[p] for p in pos] for k, v in self.hparams.items()},
                 [self.seeds[p] for p in pos], [self.axis_values[p] for p in pos],
                 {k: [v[p] for p in pos] for k, v in self.extra.items()},
                 self.fused, self.fused_with)


@dataclass
class Plan:
  axes: list[str]
  groups: list[Group]

  @property
  def n_points(self) -> int:
    return sum(len(g) for g in self.groups)


@dataclass
class Chunk:
  """Lanes of one compiled call: the first `size` are real points, the rest (if any)
  pad the chunk to its compiled shape by repeating the last point. `axis_values` and
  `extra` hold the real points only. `process` is the process that writes them."""

  group: int
  run_ids: np.ndarray
  hparams: dict[str, np.ndarray]
  seeds: np.ndarray
  axis_values: list[dict[str, Any]]
  size: int
  extra: dict[str, np.ndarray] = field(default_factory=dict)
  process: int = 0

  def take(self, lanes: np.ndarray, process: int = 0) -> Chunk:
    """The real lanes among `lanes` (sorted lane indices), as a chunk without padding."""
    lanes = np.asarray(lanes, int)
    lanes = lanes[lanes < self.size]
    return Chunk(self.group, self.run_ids[lanes], {k: v[lanes] for k, v in self.hparams.items()},
                 self.seeds[lanes], [self.axis_values[i] for i in lanes], len(lanes),
                 {k: v[lanes] for k, v in self.extra.items()}, process)


def _static_signature(flat: dict[str, Any]) -> tuple:
  items = [(k, v) for k, v in flat.items()
           if k not in TRACED_KEYS and k not in ("sweep.axes", "quick_overrides")]
  items += [(f"{k}>0", flat[k] > 0) for k in STAGE_SWITCHES]
  return tuple(sorted(items))


def make_plan(cfg: mlc.ConfigDict, validate: bool = True) -> Plan:
  """Validates `cfg` and its whole grid, then groups points by static structure.

  ``validate=False`` only groups: for a config whose points a validated plan already
  covers (e.g. the boundary search's other axes, `gradlab.sweep.boundary.outer_plan`).
  With ``sweep.replicas = R`` every grid point is R runs, lanes of the same group (no
  extra compile): see `_add_replicas`. Every point's unset optimizer numbers take its
  optimizer's paper default, else the shared one (`gradlab.optim.resolve_point`); a
  group's cfg holds its first point's numbers, and the numbers that differ between rows
  become ``optimizer.<key>`` result columns (`_add_number_columns`).
  """
  if validate:
    config_lib.check_keys(cfg, KNOWN_KEYS)
    check_sweep_keys(cfg)
  axes = list(cfg.sweep.axes.keys())
  base = config_lib.flatten(cfg)
  value_lists = []
  for key in axes:
    value_lists.append([config_lib.coerce(key, base[key], v) for v in cfg.sweep.axes[key]])
  groups: dict[tuple, Group] = {}
  checked_names: set[tuple[str, Any]] = set()
  replicas = int(cfg.sweep.replicas)
  for point, combo in enumerate(itertools.product(*value_lists)):
    overrides = dict(zip(axes, combo, strict=True))
    flat = resolve_point({**base, **overrides}, axes)[0]  # unset optimizer numbers filled
    if validate:
      check_point(flat, checked_names)
    sig = _static_signature(flat)
    if sig not in groups:
      gcfg = config_lib.with_overrides(cfg, {**{k: flat[k] for k in NUMBER_KEYS}, **overrides})
      if validate:
        check_structure(gcfg)
      groups[sig] = Group(index=len(groups), cfg=gcfg,
                          hparams={k.split(".")[-1]: [] for k in TRACED_KEYS},
                          extra={"replica": []} if replicas > 1 else {})
    _add_replicas(groups[sig], point, replicas, flat, overrides)
  plan = Plan(axes=axes, groups=list(groups.values()))
  _add_number_columns(plan)
  if bool(cfg.sweep.fuse_optimizers):
    _fuse(plan, groups)
  return plan


def _fuse(plan: Plan, groups: dict[tuple, Group]) -> None:
  """``sweep.fuse_optimizers``: groups whose static structure differs only in
  ``optimizer.name`` (and whose optimizers can share a program: `gradlab.optim.fused`)
  share the program of the first of them (`Group.fused`, `Group.fused_with`)."""
  families: dict[tuple, list[Group]] = {}
  for sig, group in groups.items():
    if unfusable(group.cfg) is None:
      rest = tuple(item for item in sig if item[0] != "optimizer.name")
      families.setdefault(rest, []).append(group)
  for members in families.values():
    names = tuple(g.cfg.optimizer.name for g in members)
    if len(members) < 2:
      continue
    for g in members:
      g.fused, g.fused_with = names, members[0].index


def _add_number_columns(plan: Plan) -> None:
  """Adds the ``optimizer.<key>`` result columns of the numbers that differ between the
  plan's rows (`gradlab.optim.number_columns`) to each group's extra columns."""
  columns = number_columns([(g.cfg.optimizer.name, g.hparams) for g in plan.groups],
                           skip=plan.axes)
  for group, group_columns in zip(plan.groups, columns, strict=True):
    group.extra.update(group_columns)


def _add_replicas(group: Group, point: int, replicas: int, flat: dict[str, Any],
                  overrides: dict[str, Any]) -> None:
  """Adds the `replicas` runs of grid point `point` to `group` as lanes: run_id
  point * replicas + r and seed train.seed + r (the point's own seed, an axis value or
  the config's, plus r) for r = 0..replicas-1, with a `replica` column when replicas > 1
  (with one replica, run_ids and rows are those of a sweep without replicas)."""
  traced = config_lib.traced_values(flat, TRACED_KEYS)
  for r in range(replicas):
    group.run_ids.append(point * replicas + r)
    for short, value in traced.items():
      group.hparams[short].append(value + r if short == "seed" else value)
    group.seeds.append(int(flat["train.seed"]) + r)
    group.axis_values.append(overrides)
    if replicas > 1:
      group.extra["replica"].append(r)


def check_point(flat: dict[str, Any], checked_names: set[tuple[str, Any]]) -> None:
  """One point's ranges and cross-key checks (the schema's), and its registry names
  (each name looked up once per plan: `checked_names` holds those already seen)."""
  config_lib.check_values(flat, SCHEMA)
  for key, check in _NAMED:
    if (key, flat[key]) not in checked_names:
      check(flat[key])
      checked_names.add((key, flat[key]))


def check_structure(gcfg: mlc.ConfigDict) -> None:
  """A group's static options that only its builders judge (normalization, residual
  init, a ResNet's depth, a bound loss's options): build the model module and bind the
  loss once, without initializing anything, so a bad choice fails before any compile."""
  build_model(gcfg, 1)
  if gcfg.train.loss != "auto":
    loss = LOSSES.get(gcfg.train.loss)
    if loss.bind is not None:
      loss.bind(gcfg.train)


def check_sweep_keys(cfg: mlc.ConfigDict) -> None:
  """Range checks on the `sweep` and `mesh` sections (one ConfigError each)."""
  s = cfg.sweep
  if isinstance(s.replicas, bool) or not isinstance(s.replicas, int) or s.replicas < 1:
    raise ConfigError(f"config key 'sweep.replicas' must be a positive integer (seeds per "
                      f"cell), got {s.replicas!r}")
  if "sweep.replicas" in s.axes:
    raise ConfigError("config key 'sweep.replicas' cannot be a sweep axis (every cell of a "
                      "sweep has the same replicas); set --config.sweep.replicas=R")
  if int(s.chunk_size) < 0:
    raise ConfigError(f"config key 'sweep.chunk_size' must be >= 0, got {s.chunk_size}")
  if not float(s.memory_budget) >= 0:
    raise ConfigError(f"config key 'sweep.memory_budget' must be >= 0 (bytes; 0 = half the "
                      f"device's memory), got {s.memory_budget}")
  if s.cpu_opt_level not in LEVELS:
    raise ConfigError(f"config key 'sweep.cpu_opt_level' must be one of "
                      f"{', '.join(map(str, LEVELS))} (LLVM's optimization level on the CPU), "
                      f"got {s.cpu_opt_level!r}")
  if int(cfg.mesh.data) < 1:
    raise ConfigError(f"config key 'mesh.data' must be >= 1, got {cfg.mesh.data}")
  if not isinstance(s.tensorboard, bool):
    raise ConfigError(f"config key 'sweep.tensorboard' takes true/false, got "
                      f"{s.tensorboard!r}")
  if "sweep.tensorboard" in s.axes:
    raise ConfigError("config key 'sweep.tensorboard' cannot be a sweep axis (it says what "
                      "the sweep writes); set --config.sweep.tensorboard=True")
  if s.mode not in MODES:
    raise ConfigError(f"unknown sweep mode '{s.mode}'; known: {', '.join(MODES)}")
  if s.mode == "boundary":
    if s.boundary_axis not in TRACED_KEYS or s.boundary_axis in STAGE_SWITCHES:
      traced = [k for k in TRACED_KEYS if k not in STAGE_SWITCHES]
      raise ConfigError(f"config key 'sweep.boundary_axis' must name a traced number, got "
                        f"'{s.boundary_axis}'; known: {', '.join(traced)}")
    if s.boundary_axis not in s.axes:
      raise ConfigError(f"boundary search along '{s.boundary_axis}' needs it as a sweep axis "
                        f"(its min and max are the search bracket): add "
                        f"--axis={s.boundary_axis}=LOW,HIGH")
    if len(set(s.axes[s.boundary_axis])) < 2:
      raise ConfigError(f"sweep axis '{s.boundary_axis}' needs two different values (the "
                        f"bracket of the boundary search)")
    if int(s.boundary_rounds) < 0:
      raise ConfigError(f"config key 'sweep.boundary_rounds' must be >= 0, got "
                        f"{s.boundary_rounds}")


def round_up(n: int, multiple: int) -> int:
  return -(-int(n) // multiple) * multiple


def chunk_size_for(cfg: mlc.ConfigDict, n_points: int, multiple: int = 1) -> int:
  """An explicit `sweep.chunk_size` for `n_points` points, at most the points there are,
  rounded up to a multiple of the mesh's grid axis (0 when the size is chosen from the
  memory budget: see `gradlab.sweep.memory`). The plan checked that it is >= 0."""
  size = int(cfg.sweep.chunk_size)
  return 0 if size == 0 else round_up(min(size, n_points), multiple)


def chunks(group: Group, size: int) -> Iterator[Chunk]:
  """Fixed-size chunks of a group (one compiled shape); the last is padded."""
  n = len(group)
  for start in range(0, n, size):
    stop = min(start + size, n)
    take = np.minimum(np.arange(start, start + size), stop - 1)
    yield Chunk(
      group=group.index,
      run_ids=np.asarray(group.run_ids)[take],
      hparams={k: np.asarray(v, np.float32)[take] for k, v in group.hparams.items()},
      seeds=np.asarray(group.seeds)[take],
      axis_values=group.axis_values[start:stop],
      size=stop - start,
      extra={k: np.asarray(v)[start:stop] for k, v in group.extra.items()},
    )
