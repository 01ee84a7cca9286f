"""Shared pieces of the absl entry points: config loading, --axis, clean errors."""

from __future__ import annotations

import datetime
import errno
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
from gradlab.results import check_workdir as check_workdir  # one check, also the sweep's

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
  if not values["coordinator"].value and not mesh.tpu_environment():
    raise ConfigError("--multihost outside a Cloud TPU VM needs --coordinator=HOST:PORT (of "
                      "process 0), --num_processes and --process_id")
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
  if kind in ("geom", "lin"):
    start, stop, num = _spacing(spec, kind, args)
    space = np.geomspace if kind == "geom" else np.linspace
    return key, [float(v) for v in np.round(space(start, stop, num), 8)]
  items = [v.strip() for v in values.split(",") if v.strip()]
  return key, [_literal(v) for v in items]


def positive_ints(values: Sequence[str], flag: str) -> list[int]:
  """A list flag's values as positive whole numbers (['64', '128'] -> [64, 128]); any
  other value is a ConfigError naming `flag` and the value."""
  out = []
  for text in values:
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
      raise ConfigError(f"{flag}: '{text}' is not a positive whole number (e.g. "
                        f"{flag}=64,128,256)")
    out.append(int(text))
  return out


def _spacing(spec: str, kind: str, args: Sequence[str]) -> tuple[float, float, int]:
  """(START, STOP, NUM) of a geom:/lin: axis, or a ConfigError: finite START and STOP
  (both positive for geom, which is log-spaced), NUM a positive whole number."""
  form = f"KEY={kind}:START:STOP:NUM"
  if len(args) != 3:
    raise ConfigError(f"--axis '{spec}' must look like {form}")
  try:
    start, stop = float(args[0]), float(args[1])
  except ValueError:
    raise ConfigError(f"--axis '{spec}': START and STOP must be numbers") from None
  if not args[2].strip().isdigit() or int(args[2]) < 1:
    raise ConfigError(f"--axis '{spec}': NUM must be a positive whole number, got '{args[2]}'")
  if not (np.isfinite(start) and np.isfinite(stop)):
    raise ConfigError(f"--axis '{spec}': START and STOP must be finite")
  if kind == "geom" and not (start > 0 and stop > 0):
    raise ConfigError(f"--axis '{spec}': geom is log-spaced, so START and STOP must both be "
                      f"positive (use lin:START:STOP:NUM to include 0 or negative values)")
  return start, stop, int(args[2])


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
  """A --config.KEY=... override of a swept KEY would be silently ignored: refuse it.
  Call it with the axes of the config file AND of the --axis flags applied (`apply_axes`):
  an axis given on the command line overrides a --config.KEY just the same."""
  for key in user_override_keys(argv):
    if key in cfg.sweep.axes:
      raise ConfigError(f"'{key}' is a sweep axis of this config (its file or --axis), so "
                        f"--config.{key} would be ignored; set its values with "
                        f"--axis={key}=v1,v2,... or drop the axis")


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


# The exit status of a run stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130

# What a Ctrl-C line says about resuming, for the sweep (the default) and one-run commands.
SWEEP_RESUMES = ("the results written so far are kept; rerunning the same command (same "
                 "--workdir) resumes where it stopped")


def _causes(e: BaseException) -> list[BaseException]:
  """`e` and the exceptions it was raised from or during, innermost last."""
  chain: list[BaseException] = []
  while e is not None and e not in chain:
    chain.append(e)
    e = e.__cause__ or e.__context__
  return chain


def _disk_full(e: BaseException) -> bool:
  return any(isinstance(c, OSError) and (c.errno == errno.ENOSPC
                                         or "No space left on device" in str(c))
             for c in _causes(e))


def _out_of_memory(e: BaseException) -> bool:
  return any(isinstance(c, MemoryError) or "RESOURCE_EXHAUSTED" in str(c) for c in _causes(e))


# (does this exception mean it, what to change): run-time failures that are the machine's
# limits, not bugs, each reported as one line and exit status 2 (`run_cleanly`).
RUNTIME_FAILURES: tuple[tuple[Callable[[BaseException], bool], str], ...] = (
  (_disk_full, "the disk is full: free disk space, or write fewer files with "
   "--config.sweep.keep_trajectories=False (result rows only)"),
  (_out_of_memory, "out of memory: give a smaller --config.sweep.chunk_size (lanes per "
   "compiled call; 0 = sized from sweep.memory_budget) or a smaller "
   "--config.sweep.memory_budget (bytes per device); for one run, a smaller model.width, "
   "data.batch_size or train.eval_size"),
)


def runtime_failure_line(e: BaseException) -> str | None:
  """The one line (what to change) for a run-time failure of `RUNTIME_FAILURES`, with
  the error's own first line; None for anything else (a bug: its traceback is kept)."""
  for matches, advice in RUNTIME_FAILURES:
    if matches(e):
      first = (str(e).strip().splitlines() or [type(e).__name__])[0]
      return f"{advice}; results already written are kept ({_one_line(first)[:200]})"
  return None


def make_main(body: Callable[[], int | None], log_level: int | None = None,
              interrupted: str = SWEEP_RESUMES) -> Callable[[list[str]], None]:
  """The absl `main` of an entry point: no positional arguments, gradlab's log level,
  and `body` run through `run_cleanly` (a ConfigError or a full disk or memory is one
  line and exit status 2; Ctrl-C is one line, `interrupted`, and exit status 130)."""

  def main(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if log_level is not None:
      logging.getLogger("gradlab").setLevel(log_level)
    sys.exit(run_cleanly(body, interrupted))

  return main


def run_cleanly(main: Callable[[], int | None], interrupted: str = SWEEP_RESUMES) -> int:
  """Calls main. A ConfigError, or a run-time failure of `RUNTIME_FAILURES` (disk full,
  out of memory), becomes one line on stderr and exit status 2; Ctrl-C one line saying
  `interrupted` and exit status 130 (`EXIT_INTERRUPTED`), never a traceback."""
  try:
    return main() or 0
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    _close_progress_bars()
    print(f"interrupted: {interrupted}", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
  except Exception as e:
    line = runtime_failure_line(e)
    if line is None:
      raise
    _close_progress_bars()
    print(f"error: {line}", file=sys.stderr)
    return 2


def _close_progress_bars() -> None:
  """Ends any open tqdm progress bar (its line finished), so a last line printed after a
  run stopped mid-sweep starts on a line of its own."""
  tqdm = sys.modules.get("tqdm")
  for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
    bar.close()
