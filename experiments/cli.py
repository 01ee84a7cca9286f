"""Shared pieces of the absl entry points: config loading, --axis, clean errors."""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections as mlc
import numpy as np
from absl import flags

from gradlab.config import make_axes
from gradlab.registry import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "default.py")


def define_axis_flag() -> flags.FlagHolder:
  return flags.DEFINE_multi_string(
    "axis", [],
    "Sets or replaces a sweep axis: KEY=v1,v2,... or KEY=geom:START:STOP:NUM "
    "(log-spaced) or KEY=lin:START:STOP:NUM; e.g. --axis=init.sigma_w=geom:0.25:8:10.")


def parse_axis(spec: str) -> tuple[str, list[Any]]:
  """'init.sigma_w=geom:0.25:8:10' -> ('init.sigma_w', [0.25, ..., 8.0])."""
  if "=" not in spec:
    raise ConfigError(f"--axis '{spec}' must look like KEY=v1,v2,... or KEY=geom:START:STOP:NUM")
  key, _, values = spec.partition("=")
  kind, *args = values.split(":")
  if kind in ("geom", "lin") and len(args) == 3:
    try:
      start, stop, num = float(args[0]), float(args[1]), int(args[2])
    except ValueError as e:
      raise ConfigError(f"--axis '{spec}': START, STOP and NUM must be numbers") from e
    space = np.geomspace if kind == "geom" else np.linspace
    return key, [float(v) for v in np.round(space(start, stop, num), 8)]
  items = [v.strip() for v in values.split(",") if v.strip()]
  return key, [_literal(v) for v in items]


def _literal(text: str) -> Any:
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  return text


def apply_axes(cfg: mlc.ConfigDict, specs: Sequence[str]) -> mlc.ConfigDict:
  if not specs:
    return cfg
  axes = dict(cfg.sweep.axes.items())
  for spec in specs:
    key, values = parse_axis(spec)
    axes[key] = values
  cfg.sweep["axes"] = make_axes(axes)
  return cfg


def default_workdir(config_path: str) -> str:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  name = os.path.splitext(os.path.basename(config_path or "default"))[0]
  return os.path.join("runs", f"{stamp}-{name}")


def run_cleanly(main: Callable[[], int | None]) -> int:
  """Calls main; a ConfigError becomes one line on stderr and exit status 2."""
  try:
    return main() or 0
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
