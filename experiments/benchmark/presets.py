"""The benchmark presets: a deep tanh MLP on MNIST-1D trained with Adam over a grid.

Every preset sweeps ``init.sigma_w`` (log-spaced in `SIGMA_W_RANGE`) against
``optimizer.learning_rate`` (log-spaced in `LR_RANGE`), the grid of the default study,
so some points train, some explode and some diverge to NaN, as in real use.
"""

from __future__ import annotations

import dataclasses
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


PRESETS: dict[str, Preset] = {
  # For tests: checks that the benchmark works end to end in seconds. Not a measurement.
  "tiny": Preset("tiny", depth=2, width=8, batch_size=8, steps=20, points=4),
  "small": Preset("small", depth=10, width=32, batch_size=32, steps=500),
  "large": Preset("large", depth=10, width=128, batch_size=128, steps=200),
}

# What `--preset=all` runs, in order.
ALL: tuple[str, ...] = ("small", "large")


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
  """The sweep config of `preset` over a grid of `points` points (default: preset.points)."""
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
