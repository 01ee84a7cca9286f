"""The config schema, its defaults, and validation with one clear error per mistake.

A config is an ``ml_collections.ConfigDict`` with these sections (other modules, tools
and issues rely on the names):

- ``model``: name, depth, width, activation, layer_norm, use_bias
- ``init``: family, sigma_w, sigma_b. ``sigma_w`` is the weight SCALE (a standard
  deviation multiplier: W = sigma_w * W_unit / sqrt(fan_in) for LeCun), not the
  variance sigma_w^2 of the mean-field papers.
- ``optimizer``: name, remedies ('+'-separated remedy names, e.g. 'agc+skip_nonfinite';
  '' or 'none' for none), schedule (constant, linear_warmup, warmup_cosine), and the
  numbers of `OPTIMIZER_NUMBERS`: learning_rate, momentum, b1, b2, b3, alpha, eps,
  weight_decay, decay, decay_rate, clip (global-norm threshold; 0 turns the clip stage
  off), clip_value, agc_clip, layer_clip, spike_factor, spike_decay, warmup_steps,
  decay_steps (0 = train.steps), average_start, average_every
- ``data``: name, data_dir ('' = TFDS's default), batch_size (0 = full batch)
- ``train``: steps, log_every, seed, eval_size, layer_probes (per-layer gradient norms),
  loss (cross_entropy, mse)
- ``regimes``: explode_factor, stall_fraction, and the init-time prediction's
  vanish_gain, explode_gain (see `gradlab.regimes`)
- ``diagnostics``: every (sharpness by power iteration every this many steps, a
  multiple of train.log_every; 0 = off), power_iters
- ``sweep``: axes (dotted key -> list of values); chunk_size (lanes per compiled call;
  0 = chosen from memory_budget); memory_budget (bytes per device; 0 = half the device's
  memory); keep_trajectories (False: result rows only); compile_cache ('' =
  <workdir's parent>/.jax_cache, 'none' = off, else a folder); mode ('grid' or
  'boundary'); boundary_axis, boundary_rounds, dense_workdir (see
  `gradlab.sweep.boundary`)
- ``mesh``: data (devices on the mesh's 'data' axis: data parallelism inside one run;
  the rest carry lanes on the 'grid' axis; 1 = all devices on 'grid')

Keys listed in `TRACED_KEYS` are traced numbers inside `run()`: sweeping them never
recompiles. Every other key is static: points that differ in it form separate groups,
each compiled once.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections as mlc

from gradlab.optim.registry import HPARAM_DEFAULTS
from gradlab.registry import ConfigError

# The optimizer section's numbers: every key the optimizer zoo, remedies, schedules and
# Gadam read (gradlab.optim.HPARAM_DEFAULTS), with the config's own defaults. ``clip`` is
# 0 here: a positive value switches the global-norm stage on.
OPTIMIZER_NUMBERS: dict[str, float] = {**HPARAM_DEFAULTS, "clip": 0.0, "decay_steps": 0.0}

# Traced init scales beyond sigma_w / sigma_b; a model's scale_rule says which
# parameters each multiplies (gradlab.models.registry.Model).
INIT_SCALES: dict[str, float] = {
  "spectral_radius": 1.0,  # recurrent kernels: their spectral radius (or gain)
  "embed_scale": 1.0,      # Transformer multipliers on top of sigma_w
  "attn_scale": 1.0,
  "mlp_scale": 1.0,
  "output_scale": 1.0,
}

TRACED_KEYS: tuple[str, ...] = (
  "init.sigma_w",
  "init.sigma_b",
  *(f"init.{k}" for k in INIT_SCALES),
  *(f"optimizer.{k}" for k in OPTIMIZER_NUMBERS),
  "train.z_loss",
  "train.seed",
)

# Traced keys whose sign also switches a stage on or off (a static choice).
STAGE_SWITCHES: tuple[str, ...] = ("optimizer.clip", "train.z_loss")

# Static model keys, one block per family (each family's module documents its own).
MODEL_KEYS: dict[str, Any] = dict(
  name="mlp", depth=10, width=64, activation="tanh", layer_norm=False, use_bias=True,
  norm="none",  # none | batch | layer | group | rms (families that support it)
)
CNN_KEYS: dict[str, Any] = dict(
  kernel_size=3, residual_init="none",  # none | skipinit | zero_gamma
  downsample=2,  # cnn / cnn_localizer: how many convs have stride 2 (gradlab.models.cnn)
)
RNN_KEYS: dict[str, Any] = dict(
  readout="last",  # last | every
)
TRANSFORMER_KEYS: dict[str, Any] = dict(
  heads=4, mlp_ratio=4, ln_position="pre", qk_norm=False, tied_embeddings=True,
  positions="learned", scale_residual=False,
  vocab_size=0,  # transformer input vocabulary; 0 = the dataset's number of classes
)
INIT_KEYS: dict[str, Any] = dict(
  family="lecun", sigma_w=1.0, sigma_b=0.0, **INIT_SCALES,
  recurrent_family="orthogonal", forget_bias=0.0,
)
DATA_KEYS: dict[str, Any] = dict(
  name="mnist1d", data_dir="", batch_size=64,
  augment="none",   # none | crop_flip (on device, per sampled minibatch)
  seq_len=20,       # sequence tasks: T (static)
  stream=0,         # 0: whole train split on device; N: stream N examples per segment
)
TRAIN_KEYS: dict[str, Any] = dict(
  steps=300, log_every=10, seed=0, eval_size=1024, layer_probes=True,
  loss="auto",      # auto: the dataset task's loss; or a gradlab.losses name
  z_loss=0.0,       # weight of z-loss (PaLM): z * mean(logsumexp(logits)^2); traced
  box_loss="huber",  # localization: l2 | huber (static)
)


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

  def __iter__(self):
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


def base_config() -> mlc.ConfigDict:
  """Every key gradlab knows, with its default. Config files start from this."""
  c = mlc.ConfigDict()
  c.model = mlc.ConfigDict({**MODEL_KEYS, **CNN_KEYS, **RNN_KEYS, **TRANSFORMER_KEYS})
  c.init = mlc.ConfigDict(dict(INIT_KEYS))
  c.optimizer = mlc.ConfigDict(
    dict(name="adam", remedies="", schedule="constant", **OPTIMIZER_NUMBERS)
  )
  c.data = mlc.ConfigDict(dict(DATA_KEYS))
  c.train = mlc.ConfigDict(dict(TRAIN_KEYS))
  c.regimes = mlc.ConfigDict(
    dict(explode_factor=100.0, stall_fraction=0.05, vanish_gain=1e-2, explode_gain=1e2)
  )
  c.diagnostics = mlc.ConfigDict(dict(every=0, power_iters=20))
  c.sweep = mlc.ConfigDict(
    dict(chunk_size=0, memory_budget=0.0, keep_trajectories=True, compile_cache="",
         mode="grid", boundary_axis="optimizer.learning_rate", boundary_rounds=6,
         dense_workdir="")
  )
  c.sweep.axes = Axes()
  c.mesh = mlc.ConfigDict(dict(data=1))
  # A config file's CPU-sized variant: --config.quick=True applies quick_overrides
  # (dotted key -> value; 'sweep.axes' -> a mapping of axes) before anything runs,
  # except the keys given on the command line (see `apply_quick`).
  c.quick = False
  c.quick_overrides = Axes()
  return c


def apply_quick(cfg: mlc.ConfigDict, user_keys: Sequence[str] = ()) -> mlc.ConfigDict:
  """With ``cfg.quick`` set, a copy of `cfg` with ``cfg.quick_overrides`` applied, except
  the dotted keys in `user_keys` (overrides given on the command line win). Without it,
  `cfg` unchanged. Unknown keys in the overrides are a ConfigError."""
  if not cfg.get("quick", False):
    return cfg
  overrides = dict(Axes(cfg.quick_overrides).items())
  axes = overrides.pop("sweep.axes", None)
  known = flatten(base_config())
  for key in overrides:
    if key not in known or key in ("quick", "quick_overrides"):
      raise ConfigError(f"quick_overrides names unknown config key '{key}'"
                        f"{_close(key, list(known))}")
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
  """`value` converted to the type of the schema default, or a ConfigError."""
  if isinstance(default, bool):
    if isinstance(value, bool):
      return value
    raise ConfigError(f"config key '{dotted}' takes true/false, got {value!r}")
  if isinstance(default, int | float) and not isinstance(value, bool):
    try:
      if isinstance(default, int) and float(value) == int(float(value)):
        return int(float(value))
      return float(value)
    except (TypeError, ValueError):
      pass
    raise ConfigError(f"config key '{dotted}' takes a number, got {value!r}")
  if isinstance(default, str):
    if isinstance(value, str):
      return value
    raise ConfigError(f"config key '{dotted}' takes a name (a string), got {value!r}")
  return value


def _close(name: str, known: Sequence[str]) -> str:
  close = difflib.get_close_matches(name, list(known), n=1)
  return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(cfg: mlc.ConfigDict) -> None:
  """Refuses config keys the schema does not have, and sweep axes over unknown keys."""
  known = flatten(base_config())
  for key in flatten(cfg):
    if key not in known:
      raise ConfigError(f"unknown config key '{key}'{_close(key, list(known))}")
  for key, values in cfg.sweep.axes.items():
    if key not in known or key == "sweep.axes":
      raise ConfigError(
        f"sweep axis '{key}' names a key the config does not have{_close(key, list(known))}"
      )
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
      raise ConfigError(f"sweep axis '{key}' must be a list of values, got {values!r}")
    if len(values) == 0:
      raise ConfigError(f"sweep axis '{key}' is empty; give it at least one value")


_POSITIVE = ("model.depth", "model.width", "data.seq_len", "optimizer.learning_rate", "train.steps",
             "train.log_every", "regimes.explode_factor", "optimizer.clip_value",
             "optimizer.agc_clip", "optimizer.layer_clip", "optimizer.spike_factor",
             "optimizer.average_every", "optimizer.decay_rate", "diagnostics.power_iters",
             "regimes.vanish_gain", "regimes.explode_gain")
_NON_NEGATIVE = ("init.sigma_w", "init.sigma_b", *(f"init.{k}" for k in INIT_SCALES),
                 "train.z_loss", "data.stream", "optimizer.clip", "optimizer.eps",
                 "optimizer.weight_decay", "optimizer.alpha", "optimizer.warmup_steps",
                 "optimizer.decay_steps", "optimizer.average_start", "data.batch_size",
                 "train.eval_size", "train.seed", "regimes.stall_fraction")
_UNIT_INTERVAL = ("optimizer.momentum", "optimizer.b1", "optimizer.b2", "optimizer.b3",
                  "optimizer.decay", "optimizer.spike_decay")


def traced_values(flat: Mapping[str, Any]) -> dict[str, float]:
  """The traced numbers of one flattened point, by short name (the key's last part).

  ``optimizer.decay_steps = 0`` resolves to ``train.steps`` here, in one place.
  """
  out = {dotted.split(".")[-1]: float(flat[dotted]) for dotted in TRACED_KEYS}
  if out["decay_steps"] <= 0:
    out["decay_steps"] = float(flat["train.steps"])
  return out


def parse_remedies(text: str) -> tuple[str, ...]:
  """'agc+skip_nonfinite' -> ('agc', 'skip_nonfinite'); '' and 'none' -> ()."""
  names = tuple(n.strip() for n in str(text).split("+") if n.strip())
  return () if names in ((), ("none",)) else names


def check_values(point: Mapping[str, Any]) -> None:
  """Range checks on one flattened point (the base config with one grid point applied)."""
  for key in _POSITIVE:
    if not point[key] > 0:
      raise ConfigError(f"config key '{key}' must be positive, got {point[key]!r}")
  for key in _NON_NEGATIVE:
    if not point[key] >= 0:
      raise ConfigError(f"config key '{key}' must be >= 0, got {point[key]!r}")
  for key in _UNIT_INTERVAL:
    if not 0 <= point[key] < 1:
      raise ConfigError(f"config key '{key}' must lie in [0, 1), got {point[key]!r}")
  every = point["diagnostics.every"]
  if every < 0 or every % point["train.log_every"]:
    raise ConfigError(f"config key 'diagnostics.every' ({every}) must be 0 or a multiple of "
                      f"'train.log_every' ({point['train.log_every']})")
  if point["train.log_every"] > point["train.steps"]:
    raise ConfigError(
      f"config key 'train.log_every' ({point['train.log_every']}) exceeds "
      f"'train.steps' ({point['train.steps']})"
    )
