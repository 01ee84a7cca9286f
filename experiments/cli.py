"""Shared pieces of the absl entry points: config loading, --axis, clean errors."""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections as mlc
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from gradlab.config import make_axes
from gradlab.registry import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "default.py")


def define_axis_flag() -> flags.FlagHolder:
  return flags.DEFINE_multi_string(
    "axis", [],
    "Sets or replaces a sweep axis: KEY=v1,v2,... or KEY=geom:START:STOP:NUM "
    "(log-spaced) or KEY=lin:START:STOP:NUM; e.g. --axis=init.sigma_w=geom:0.25:8:10.")


def define_scaling_flags() -> dict[str, flags.FlagHolder]:
  """--multihost, --coordinator, --num_processes, --process_id, --resume."""
  return {
    "multihost": flags.DEFINE_bool(
      "multihost", None,
      "Run as one process of a multi-process sweep (jax.distributed.initialize). Default: "
      "on when a Cloud TPU VM is detected, off otherwise. Every process runs the same "
      "command; on a TPU VM JAX finds the other processes itself."),
    "coordinator": flags.DEFINE_string(
      "coordinator", "", "Multi-host without a TPU: HOST:PORT of process 0."),
    "num_processes": flags.DEFINE_integer(
      "num_processes", 0, "Multi-host without a TPU: the number of processes."),
    "process_id": flags.DEFINE_integer(
      "process_id", -1, "Multi-host without a TPU: this process's index (0 .. n-1)."),
    "resume": flags.DEFINE_enum(
      "resume", "auto", ["auto", "force"],
      "Rerunning into a workdir skips the runs already written. 'auto' refuses a workdir "
      "whose saved config differs (naming the keys); 'force' adds to it anyway, so its "
      "results may then mix two configs."),
  }


def start_processes(values: dict[str, flags.FlagHolder], workdir: str) -> bool:
  """Calls jax.distributed.initialize when --multihost is on (or, unset, on a TPU VM) and
  routes gradlab's log to the terminal (process 0 prints progress, the others warnings
  only). Returns whether this is a multi-process run."""
  from gradlab.sweep import mesh

  setup_logging(chatty=True)
  multihost = values["multihost"].value
  if multihost is None:
    multihost = mesh.tpu_environment()
  if not multihost:
    return False
  if not workdir:
    raise ConfigError("a multi-host sweep needs --workdir (every process must write to the "
                      "same folder)")
  mesh.initialize_multihost(values["coordinator"].value, values["num_processes"].value,
                            values["process_id"].value)
  import jax

  setup_logging(chatty=jax.process_index() == 0)
  return True


class _Below(logging.Filter):
  def __init__(self, level: int):
    super().__init__()
    self.level = level

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno < self.level


def setup_logging(chatty: bool = True) -> None:
  """gradlab's log as plain lines: information on stdout (when `chatty`), warnings on
  stderr prefixed 'warning: '."""
  logger = logging.getLogger("gradlab")
  out = logging.StreamHandler(sys.stdout)
  out.setFormatter(logging.Formatter("%(message)s"))
  out.addFilter(_Below(logging.WARNING))
  err = logging.StreamHandler(sys.stderr)
  err.setLevel(logging.WARNING)
  err.setFormatter(logging.Formatter("warning: %(message)s"))
  logger.handlers = [out, err]
  logger.propagate = False
  logger.setLevel(logging.INFO if chatty else logging.WARNING)
  logging.getLogger("jax").setLevel(logging.WARNING)  # absl would print jax's INFO lines


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
  cfg.sweep.axes = make_axes(axes)
  return cfg


def check_overrides_not_swept(cfg: mlc.ConfigDict, argv: Sequence[str]) -> None:
  """A --config.KEY=... override of a swept KEY would be silently ignored: refuse it."""
  for arg in argv:
    if arg.startswith("--config.") and "=" in arg:
      key = arg[len("--config."):].split("=", 1)[0]
      if key in cfg.sweep.axes:
        raise ConfigError(f"'{key}' is a sweep axis of this config, so --config.{key} would "
                          f"be ignored; set its values with --axis={key}=v1,v2,...")


def user_override_keys(argv: Sequence[str]) -> list[str]:
  """The dotted keys given as --config.KEY=... on the command line."""
  return [a[len("--config."):].split("=", 1)[0] for a in argv
          if a.startswith("--config.") and "=" in a]


def apply_quick(cfg: mlc.ConfigDict, argv: Sequence[str]) -> mlc.ConfigDict:
  """--config.quick=True: the config file's CPU variant (`gradlab.defaults.apply_quick`),
  with the command line's own overrides kept."""
  from gradlab.defaults import apply_quick as apply

  return apply(cfg, user_override_keys(argv))


def default_workdir(config_path: str, quick: bool = False) -> str:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  name = os.path.splitext(os.path.basename(config_path or "default"))[0]
  name += "-quick" if quick else ""
  return os.path.join("runs", f"{stamp}-{name}")


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).replace("\\n", " ").split())


def _check_override_keys(argv: Sequence[str]) -> None:
  """--config.KEY=... must name a key of gradlab's config schema."""
  from gradlab.config import check_override_keys
  from gradlab.defaults import KNOWN_KEYS

  check_override_keys(user_override_keys(argv), KNOWN_KEYS)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flags_parser: --config defaults to configs/default.py; any flag or config error
  (unknown key, bad value, missing file) is one line on stderr and exit status 2."""
  if not any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
    argv = [argv[0], f"--config={DEFAULT_CONFIG}", *argv[1:]]
  try:
    path = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), None)
    if path is not None and not os.path.isfile(path.split(":")[0]):
      raise ConfigError(f"config file '{path}' does not exist")
    _check_override_keys(argv)
    rest = flags.FLAGS(argv)
    _ = flags.FLAGS.config.model  # a config file that failed to load raises here
    return rest
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
  except Exception as e:  # noqa: BLE001 - absl and ml_collections raise many kinds
    print(f"error: {_one_line(e) or type(e).__name__}", file=sys.stderr)
  sys.exit(2)


def config_path() -> str:
  return config_flags.get_config_filename(flags.FLAGS["config"])


def make_main(body: Callable[[], int | None], log_level: int | None = None
              ) -> Callable[[list[str]], None]:
  """The absl `main` of an entry point: no positional arguments, gradlab's log level,
  and `body` run through `run_cleanly` (a ConfigError is one line and exit status 2)."""

  def main(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if log_level is not None:
      logging.getLogger("gradlab").setLevel(log_level)
    sys.exit(run_cleanly(body))

  return main


def run_cleanly(main: Callable[[], int | None]) -> int:
  """Calls main; a ConfigError becomes one line on stderr and exit status 2."""
  try:
    return main() or 0
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
