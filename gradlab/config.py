"""The config schema's machinery: the key registry, plain-dict conversion, overrides and
validation with one clear error per mistake.

A config is an ``ml_collections.ConfigDict`` with the sections of `SECTIONS` (other
modules, tools and issues rely on the names) plus ``quick`` and ``quick_overrides``.
Nobody lists every key here: each model family, the init section, each optimizer set
(base optimizers, remedies, schedules), the data section and the losses declare their
OWN keys and defaults beside their builders with `register_keys`, as init2winit keeps
``DEFAULT_HPARAMS`` beside each model; `gradlab.defaults` imports them all and assembles
the whole schema (``gradlab.defaults.base_config()``). Where each section's keys live:

- ``model``: `gradlab.models.registry` (name, depth, width, activation, use_bias, norm)
  and each family module (mlp, cnn, rnn, transformer)
- ``init``: `gradlab.models.init` (family, sigma_w, sigma_b) and the families that read
  more of it (rnn, transformer)
- ``optimizer``: `gradlab.optim.registry`, `gradlab.optim.remedies`,
  `gradlab.optim.schedules`
- ``data``: `gradlab.data.loader`
- ``train``: `gradlab.losses` (loss, z_loss, box_loss) and `gradlab.defaults`
- ``regimes``, ``diagnostics``, ``sweep``, ``mesh``: `gradlab.defaults`

Keys a group declares ``traced`` are traced numbers inside ``run()``: sweeping them never
recompiles. A default may be ``ml_collections.config_dict.placeholder(float)``: the key is
a number that is None until set (the optimizer numbers: unset, each takes its
optimizer's paper default, `gradlab.optim.paper`); a --config.KEY flag parses it as a
number. Every other key is static: points that differ in it form separate groups,
each compiled once. Range checks (positive, >= 0, in [0, 1)) and cross-key checks are
declared with the keys too; `check_values` runs them for one point.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import ml_collections as mlc

from gradlab.registry import ConfigError, did_you_mean

# The config's sections, in the order traced keys and range checks are listed.
SECTIONS: tuple[str, ...] = ("model", "init", "optimizer", "data", "train", "regimes",
                             "diagnostics", "sweep", "mesh")

INT32_MAX = 2**31 - 1  # the largest whole number a key may take (int32 on device)
# (flattened point) -> None, or a ConfigError naming the bad keys.
PointCheck = Callable[[Mapping[str, Any]], None]


class KeyGroup(NamedTuple):
  """One family's keys in one config section: `defaults` (short key -> default), which
  of them are `traced` numbers, which traced keys also switch a stage on by their sign
  (`switches`, e.g. ``optimizer.clip > 0``), their ranges, and an optional cross-key
  `check` of a flattened point."""

  section: str
  family: str
  defaults: dict[str, Any]
  traced: tuple[str, ...] = ()
  switches: tuple[str, ...] = ()
  positive: tuple[str, ...] = ()
  non_negative: tuple[str, ...] = ()
  unit_interval: tuple[str, ...] = ()
  check: PointCheck | None = None


class Schema(NamedTuple):
  """Every registered key: `defaults` (section -> key -> default) and dotted key lists
  (traced, stage switches, range checks) in section order (`SECTIONS`), families by
  name, keys in their declared order; `checks` are the groups' cross-key checks;
  `integers`, `reals`: the keys whose default is a whole or a real number."""

  defaults: dict[str, dict[str, Any]]
  traced: tuple[str, ...]
  switches: tuple[str, ...]
  positive: tuple[str, ...]
  non_negative: tuple[str, ...]
  unit_interval: tuple[str, ...]
  checks: tuple[PointCheck, ...]
  integers: tuple[str, ...] = ()
  reals: tuple[str, ...] = ()


_KEY_GROUPS: dict[tuple[str, str], KeyGroup] = {}


def register_keys(section: str, defaults: Mapping[str, Any], *, family: str,
                  traced: Sequence[str] = (), switches: Sequence[str] = (),
                  positive: Sequence[str] = (), non_negative: Sequence[str] = (),
                  unit_interval: Sequence[str] = (), check: PointCheck | None = None
                  ) -> dict[str, Any]:
  """Declares `family`'s keys of config `section` with their defaults (short names; see
  `KeyGroup` for the rest). A key belongs to one family: declaring it twice is a
  ValueError. Returns the defaults as a dict, for the family's own use."""
  defaults = dict(defaults)
  named = (*traced, *switches, *positive, *non_negative, *unit_interval)
  stray = [k for k in named if k not in defaults]
  if stray or not set(switches) <= set(traced):
    raise ValueError(f"config keys {stray or list(switches)} of {section}/{family} are not "
                     f"among its {'defaults' if stray else 'traced keys'}")
  if (section, family) in _KEY_GROUPS:
    raise ValueError(f"config keys of {section}/{family} registered twice")
  for (other_section, other), group in _KEY_GROUPS.items():
    taken = sorted(set(defaults) & set(group.defaults)) if other_section == section else []
    if taken:
      raise ValueError(f"config keys {taken} of section '{section}' are declared by both "
                       f"'{other}' and '{family}'")
  _KEY_GROUPS[(section, family)] = KeyGroup(
    section, family, defaults, tuple(traced), tuple(switches), tuple(positive),
    tuple(non_negative), tuple(unit_interval), check)
  return dict(defaults)


def _group_order(key: tuple[str, str]) -> tuple[int, str, str]:
  section, family = key
  rank = SECTIONS.index(section) if section in SECTIONS else len(SECTIONS)
  return rank, section, family


def _dotted(groups: Sequence[KeyGroup], field: str) -> tuple[str, ...]:
  """The dotted keys a KeyGroup `field` (traced, positive, ...) lists, group by group."""
  return tuple(f"{g.section}.{k}" for g in groups for k in getattr(g, field))


def registered_schema() -> Schema:
  """The schema of every key group registered so far (`gradlab.defaults.SCHEMA` is the
  one with every family imported)."""
  groups = [_KEY_GROUPS[k] for k in sorted(_KEY_GROUPS, key=_group_order)]
  defaults: dict[str, dict[str, Any]] = {}
  for g in groups:
    defaults.setdefault(g.section, {}).update(g.defaults)
  fields = ("traced", "switches", "positive", "non_negative", "unit_interval")
  return Schema(defaults, *(_dotted(groups, field) for field in fields),
                tuple(g.check for g in groups if g.check is not None),
                *_keys_by_type(defaults))


def _keys_by_type(defaults: Mapping[str, Mapping[str, Any]]
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(whole-number keys, real-number keys) of `defaults`, by each default's type (a
  placeholder by its declared type; booleans are neither)."""
  integers, reals = [], []
  for section, keys in defaults.items():
    for key, default in keys.items():
      kind = default.get_type() if isinstance(default, mlc.FieldReference) else type(default)
      if kind is int:
        integers.append(f"{section}.{key}")
      elif kind is float:
        reals.append(f"{section}.{key}")
  return tuple(integers), tuple(reals)


def schema_config(schema: Schema) -> mlc.ConfigDict:
  """A fresh ConfigDict of `schema`'s defaults, with empty sweep axes and the quick
  variant off. A config file's CPU-sized variant: --config.quick=True applies
  quick_overrides (dotted key -> value; 'sweep.axes' -> a mapping of axes) before
  anything runs, except the keys given on the command line (see `apply_quick`)."""
  c = mlc.ConfigDict()
  for section, keys in schema.defaults.items():
    c[section] = mlc.ConfigDict({k: _fresh(v) for k, v in keys.items()})
  c.sweep.axes = Axes()
  c.quick = False
  c.quick_overrides = Axes()
  return c


def _fresh(default: Any) -> Any:
  """A schema default for a new config: a placeholder gets its own FieldReference (a
  shared one would tie every config's key together)."""
  if isinstance(default, mlc.FieldReference):
    return mlc.config_dict.placeholder(default.get_type())
  return default


class Axes(Mapping):
  """The sweep axes: dotted config key -> tuple of values, in the order written.

  A Mapping, not a dict, so ml_collections keeps it as one leaf (it neither converts it
  to a ConfigDict, which forbids dotted names, nor sorts its keys): the first two axes
  are the regime map's x and y, the rest make panels.
  """

  def __init__(self, axes: Mapping[str, Sequence[Any]] | Sequence[tuple[str, Sequence[Any]]]
               | None = None):
    items = axes.items() if isinstance(axes, Mapping) else (axes or ())
    self._items: tuple[tuple[str, tuple[Any, ...]], ...] = tuple(
      (str(k), tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
      for k, v in items)

  def __getitem__(self, key: str) -> Any:
    for k, v in self._items:
      if k == key:
        return v
    raise KeyError(key)

  def __iter__(self) -> Iterator[str]:
    return (k for k, _ in self._items)

  def __len__(self) -> int:
    return len(self._items)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Mapping) and list(self.items()) == list(other.items())

  def __hash__(self) -> int:
    return hash(self._items)

  def __repr__(self) -> str:
    return f"Axes({dict(self._items)!r})"

  def to_json(self) -> dict[str, list[Any]]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in self._items}


def make_axes(axes: Mapping[str, Sequence[Any]] | None = None) -> Axes:
  """The sweep axes from a mapping of dotted config keys to lists of values."""
  return Axes(axes)


def apply_quick(cfg: mlc.ConfigDict, known: Collection[str],
                user_keys: Sequence[str] = ()) -> mlc.ConfigDict:
  """With ``cfg.quick`` set, a copy of `cfg` with ``cfg.quick_overrides`` applied, except
  the dotted keys in `user_keys` (overrides given on the command line win). Without it,
  `cfg` unchanged. Keys of the overrides not in `known` (the schema's dotted keys) are a
  ConfigError."""
  if not cfg.get("quick", False):
    return cfg
  overrides = dict(Axes(cfg.quick_overrides).items())
  axes = overrides.pop("sweep.axes", None)
  for key in overrides:
    if key not in known or key in ("quick", "quick_overrides"):
      raise ConfigError(f"quick_overrides names unknown config key '{key}'"
                        f"{did_you_mean(key, known)}")
  out = with_overrides(cfg, {k: v for k, v in overrides.items() if k not in user_keys})
  if axes is not None and "sweep.axes" not in user_keys:
    out.sweep.axes = make_axes(axes)
  return out


def flatten(cfg: mlc.ConfigDict | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'model.depth': 10, ...}; the sweep axes stay one leaf ('sweep.axes')."""
  out: dict[str, Any] = {}
  for key, value in cfg.items():
    name = f"{prefix}{key}"
    if name in ("sweep.axes", "quick_overrides"):
      out[name] = Axes(value).to_json() if value is not None else {}
    elif isinstance(value, mlc.ConfigDict | Mapping):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def get(cfg: mlc.ConfigDict, dotted: str) -> Any:
  node: Any = cfg
  for part in dotted.split("."):
    node = node[part]
  return node


def from_dict(d: Mapping[str, Any]) -> mlc.ConfigDict:
  """A ConfigDict from a plain nested dict (e.g. a saved config.json), axes included."""
  d = {k: dict(v) if isinstance(v, Mapping) else v for k, v in d.items()}
  axes = d["sweep"].pop("axes", {}) if isinstance(d.get("sweep"), dict) else {}
  quick = d.pop("quick_overrides", None)
  out = mlc.ConfigDict(d)
  if "sweep" in out:
    out.sweep.axes = Axes(axes)
  if quick is not None:
    out.quick_overrides = Axes(quick)
  return out


def to_dict(cfg: mlc.ConfigDict) -> dict[str, Any]:
  """A plain nested dict of `cfg`, axes included, in their order (JSON-ready)."""
  d = {k: v.to_dict() if isinstance(v, mlc.ConfigDict) else v for k, v in cfg.items()}
  if "sweep" in d:
    d["sweep"]["axes"] = Axes(cfg.sweep.axes).to_json()
  if "quick_overrides" in d:
    d["quick_overrides"] = Axes(cfg.quick_overrides).to_json()
  return d


def copy_config(cfg: mlc.ConfigDict) -> mlc.ConfigDict:
  return from_dict(to_dict(cfg))


def with_overrides(cfg: mlc.ConfigDict, overrides: Mapping[str, Any]) -> mlc.ConfigDict:
  """A copy of `cfg` with dotted keys set to new values (types coerced to the schema's)."""
  out = copy_config(cfg)
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = out
    for part in parents:
      node = node[part]
    node[leaf] = coerce(dotted, node[leaf], value)
  return out


def coerce(dotted: str, default: Any, value: Any) -> Any:
  """`value` converted to the type of the schema default, or a ConfigError. A None
  default is an unset number (a placeholder): it takes a float, or stays None."""
  if default is None and value is not None:
    default = 0.0
  if isinstance(default, bool):
    if isinstance(value, bool):
      return value
    raise ConfigError(f"config key '{dotted}' takes true/false, got {value!r}")
  if isinstance(default, int | float) and not isinstance(value, bool):
    try:
      number = float(value)
    except (TypeError, ValueError):
      raise ConfigError(f"config key '{dotted}' takes a number, got {value!r}") from None
    if not isinstance(default, int):
      return number
    if not math.isfinite(number) or number != int(number):
      raise ConfigError(f"config key '{dotted}' takes a whole number, got {value!r}")
    return int(number)
  if isinstance(default, str):
    if isinstance(value, str):
      return value
    raise ConfigError(f"config key '{dotted}' takes a name (a string), got {value!r}")
  return value


def check_override_keys(keys: Sequence[str], known: Collection[str]) -> None:
  """Refuses dotted keys (e.g. of --config.KEY=... flags) that `known` does not have."""
  for key in keys:
    if key not in known:
      raise ConfigError(f"unknown config key '{key}'{did_you_mean(key, known)}")


def check_keys(cfg: mlc.ConfigDict, known: Collection[str]) -> None:
  """Refuses config keys not in `known` (the schema's dotted keys), and sweep axes over
  unknown keys."""
  check_override_keys(list(flatten(cfg)), known)
  for key, values in cfg.sweep.axes.items():
    if key not in known or key == "sweep.axes":
      raise ConfigError(
        f"sweep axis '{key}' names a key the config does not have{did_you_mean(key, known)}"
      )
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
      raise ConfigError(f"sweep axis '{key}' must be a list of values, got {values!r}")
    if len(values) == 0:
      raise ConfigError(f"sweep axis '{key}' is empty; give it at least one value")


def traced_values(flat: Mapping[str, Any], traced: Sequence[str]) -> dict[str, float]:
  """The traced numbers (`traced`: dotted keys) of one flattened point, by short name
  (the key's last part).

  ``optimizer.decay_steps = 0`` resolves to ``train.steps`` here, in one place.
  """
  out = {dotted.split(".")[-1]: float(flat[dotted]) for dotted in traced}
  if out["decay_steps"] <= 0:
    out["decay_steps"] = float(flat["train.steps"])
  return out


def parse_remedies(text: str) -> tuple[str, ...]:
  """'agc+skip_nonfinite' -> ('agc', 'skip_nonfinite'); '' and 'none' -> ()."""
  names = tuple(n.strip() for n in str(text).split("+") if n.strip())
  return () if names in ((), ("none",)) else names


def check_values(point: Mapping[str, Any], schema: Schema) -> None:
  """Type checks (`check_numbers`) on one flattened point (the base config with one grid
  point applied), then range checks and the schema's cross-key checks."""
  check_numbers(point, schema)
  for key in schema.positive:
    if not point[key] > 0:
      raise ConfigError(f"config key '{key}' must be positive, got {point[key]!r}")
  for key in schema.non_negative:
    if not point[key] >= 0:
      raise ConfigError(f"config key '{key}' must be >= 0, got {point[key]!r}")
  for key in schema.unit_interval:
    if not 0 <= point[key] < 1:
      raise ConfigError(f"config key '{key}' must lie in [0, 1), got {point[key]!r}")
  for check in schema.checks:
    check(point)


def check_numbers(point: Mapping[str, Any], schema: Schema) -> None:
  """Whole-number keys hold whole numbers of size <= `INT32_MAX` (a seed of 1.5 would be
  truncated, more steps overflow on device); real-number keys that are set hold finite
  numbers (an inf learning rate or stall fraction would run, or relabel, silently)."""
  for key in schema.integers:
    value = point[key]
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or abs(value) > INT32_MAX:
      raise ConfigError(f"config key '{key}' takes a whole number of at most {INT32_MAX} "
                        f"in size, got {value!r}")
  for key in schema.reals:
    value = point[key]
    if value is not None and not (isinstance(value, numbers.Real) and math.isfinite(value)):
      raise ConfigError(f"config key '{key}' takes a finite number, got {value!r}")
