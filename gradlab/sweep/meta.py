"""What a workdir records about its sweep, and the check that a rerun may resume it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from typing import Any

import ml_collections as mlc

from gradlab import results
from gradlab.config import flatten, to_dict
from gradlab.defaults import base_config
from gradlab.optim import group_numbers, resolve_point
from gradlab.registry import ConfigError


def _git_commit() -> str:
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                         text=True, timeout=5, check=False)
    return out.stdout.strip() or "unknown"
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def sweep_metadata(cfg: mlc.ConfigDict, plan: Any) -> dict[str, Any]:
  """The resolved config plus what is needed to reproduce and redraw the sweep."""
  import flax
  import jax
  import optax

  return {
    "config": to_dict(cfg),
    "optimizer_numbers": optimizer_numbers(cfg, plan),
    "axes": list(plan.axes),
    "n_points": plan.n_points,
    "n_groups": len(plan.groups),
    "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                 "python": platform.python_version()},
    "device_kind": jax.devices()[0].device_kind,
    "n_devices": jax.device_count(),
    "n_processes": jax.process_count(),
    "git_commit": _git_commit(),
  }


def optimizer_numbers(cfg: mlc.ConfigDict, plan: Any) -> list[dict[str, Any]]:
  """Per group of `plan`: its optimizer and, per number the optimizer reads, the value
  used (a list where an axis sets it) and where it came from: 'config', 'axis', 'paper'
  (the optimizer's paper default), 'steps_fraction' or 'shared' (`gradlab.optim.paper`).
  The saved ``config`` holds None for a number the config left unset."""
  base = flatten(cfg)
  out = []
  for group in plan.groups:
    _, numbers = resolve_point({**base, **group.axis_values[0]}, plan.axes)
    out.append({"group": group.index,
                **group_numbers(group.cfg.optimizer.name, group.hparams, numbers.sources)})
  return out


def _resolved(flat: dict[str, Any]) -> dict[str, Any]:
  """`flat` with its unset optimizer numbers resolved (as the plan does), so a saved
  config that wrote the shared default and one that leaves it unset compare equal."""
  try:
    return resolve_point(flat)[0]
  except (ConfigError, KeyError, TypeError, ValueError):
    return flat


# Keys that change how a sweep runs, not what it computes: a rerun may change them.
EXECUTION_KEYS = ("sweep.chunk_size", "sweep.memory_budget", "sweep.keep_trajectories",
                  "sweep.compile_cache", "sweep.dense_workdir", "sweep.chunk_timeout_s",
                  "sweep.tensorboard", "mesh.data")
RESUME_MODES = ("auto", "force")


def config_differences(saved: dict[str, Any], cfg: mlc.ConfigDict) -> list[str]:
  """Dotted keys whose value differs between a saved config and `cfg`, as
  'key: old -> new'. Execution-only keys (`EXECUTION_KEYS`) do not count, nor keys the
  saved config predates while `cfg` keeps their default."""
  defaults = flatten(to_dict(base_config()))
  old = _resolved({**defaults, **flatten(saved)})
  new = _resolved(flatten(to_dict(cfg)))
  out = []
  for k in sorted(set(old) | set(new)):
    if k in EXECUTION_KEYS:
      continue
    before = old.get(k, defaults.get(k))
    if _norm(before) != _norm(new.get(k)):
      out.append(f"{k}: {_short(before)} -> {_short(new.get(k))}")
  return out


def _short(value: Any, limit: int = 60) -> str:
  text = json.dumps(_norm(value), default=str)
  return text if len(text) <= limit else text[: limit - 3] + "..."


def _norm(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _norm(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_norm(v) for v in value]
  return value


def check_resume(workdir: str, cfg: mlc.ConfigDict, resume: str = "auto") -> list[str]:
  """Refuses to add to a workdir whose results came from a different config, naming the
  keys that differ; ``resume='force'`` adds anyway (the runs already written keep their
  old config: the results may then mix two configs). Returns the differences."""
  if resume not in RESUME_MODES:
    raise ConfigError(f"unknown resume mode '{resume}'; known: {', '.join(RESUME_MODES)}")
  if not results.chunk_files(workdir):
    return []
  saved = results.read_config(workdir)
  diff = config_differences(saved.get("config", {}), cfg)
  if diff and resume != "force":
    raise ConfigError(
      f"workdir '{workdir}' holds results of a different config (keys differ: "
      f"{'; '.join(diff)}); use a new --workdir, or --resume=force to add to it anyway"
    )
  return diff
