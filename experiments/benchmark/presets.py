"""The benchmark presets: a deep tanh MLP on MNIST-1D trained over a grid.

`tiny`, `small` and `large` train with Adam and sweep ``init.sigma_w`` (log-spaced in
`SIGMA_W_RANGE`) against ``optimizer.learning_rate`` (log-spaced in `LR_RANGE`), the grid
of the default study, so some points train, some explode and some diverge to NaN, as in
real use. `default` is the default job itself (configs/default.py: 160 points, SGD and
Adam, two groups).
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import ml_collections as mlc
import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config
from gradlab.registry import ConfigError

SIGMA_W_RANGE: tuple[float, float] = (0.25, 8.0)
LR_RANGE: tuple[float, float] = (1e-4, 10.0)


@dataclasses.dataclass(frozen=True)
class Preset:
  """The static structure of one benchmark: model, batch, steps and default grid size."""

  name: str
  depth: int
  width: int
  batch_size: int
  steps: int
  points: int = 64
  log_every: int = 10
  config: str = ""  # a config module whose grid and model the preset takes whole


PRESETS: dict[str, Preset] = {
  # For tests: checks that the benchmark works end to end in seconds. Not a measurement.
  "tiny": Preset("tiny", depth=2, width=8, batch_size=8, steps=20, points=4),
  "small": Preset("small", depth=10, width=32, batch_size=32, steps=500),
  "large": Preset("large", depth=10, width=128, batch_size=128, steps=200),
  "default": Preset("default", depth=12, width=64, batch_size=64, steps=500, points=160,
                    config="configs.default"),
}

# What `--preset=all` runs, in order.
ALL: tuple[str, ...] = ("small", "large", "default")


def get_preset(name: str) -> Preset:
  if name not in PRESETS:
    raise ConfigError(f"unknown benchmark preset '{name}'; known: {', '.join(PRESETS)}, all")
  return PRESETS[name]


def grid_shape(points: int) -> tuple[int, int]:
  """(n_sigma_w, n_learning_rate) with product `points`, as square as possible.

  64 -> (8, 8), 1024 -> (32, 32), 4 -> (2, 2), 12 -> (3, 4), 7 -> (1, 7).
  """
  if points < 1:
    raise ConfigError(f"--points must be >= 1, got {points}")
  n_sigma = max(d for d in range(1, math.isqrt(points) + 1) if points % d == 0)
  return n_sigma, points // n_sigma


def grid_axes(points: int) -> dict[str, list[float]]:
  """The sweep axes of a `points`-point grid (sigma_w outer, learning rate inner)."""
  n_sigma, n_lr = grid_shape(points)
  return {
    "init.sigma_w": [float(v) for v in np.geomspace(*SIGMA_W_RANGE, n_sigma)],
    "optimizer.learning_rate": [float(v) for v in np.geomspace(*LR_RANGE, n_lr)],
  }


def preset_config(preset: Preset, points: int | None = None, layer_probes: bool = True,
                  chunk_size: int = 0, data_dir: str = "") -> mlc.ConfigDict:
  """The sweep config of `preset` over a grid of `points` points (default: preset.points);
  a preset with a config module takes that config's grid (`points` must then be its own)."""
  if preset.config:
    return _module_config(preset, points, layer_probes, chunk_size, data_dir)
  cfg = base_config()
  cfg.model.name = "mlp"
  cfg.model.depth = preset.depth
  cfg.model.width = preset.width
  cfg.model.activation = "tanh"
  cfg.init.family = "lecun"
  cfg.init.sigma_b = 0.0
  cfg.optimizer.name = "adam"
  cfg.data.name = "mnist1d"
  cfg.data.data_dir = data_dir
  cfg.data.batch_size = preset.batch_size
  cfg.train.steps = preset.steps
  cfg.train.log_every = min(preset.log_every, preset.steps)
  cfg.train.layer_probes = layer_probes
  cfg.sweep.chunk_size = chunk_size
  if "compile_cache" in cfg.sweep:
    # Every compile is timed cold: no executables loaded from an earlier run's disk cache.
    cfg.sweep.compile_cache = "none"
  cfg.sweep["axes"] = make_axes(grid_axes(points or preset.points))
  return cfg


def _module_config(preset: Preset, points: int | None, layer_probes: bool, chunk_size: int,
                   data_dir: str) -> mlc.ConfigDict:
  """`preset.config`'s get_config(), timed cold (no compile cache)."""
  if points not in (None, preset.points):
    raise ConfigError(f"--points does not apply to the '{preset.name}' preset (its grid is "
                      f"{preset.config}'s {preset.points} points)")
  cfg = importlib.import_module(preset.config).get_config()
  cfg.data.data_dir = data_dir
  cfg.train.layer_probes = layer_probes
  if chunk_size:
    cfg.sweep.chunk_size = chunk_size
  cfg.sweep.compile_cache = "none"
  return cfg


def grid_text(preset: Preset, points: int) -> str:
  """The grid in words, for the report's heading."""
  if preset.config:
    return f"{preset.config.replace('.', '/')}.py's grid"
  n_sigma, n_lr = grid_shape(points)
  return f"{n_sigma} sigma_w x {n_lr} lr"
