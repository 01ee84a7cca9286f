"""What a workdir records about its sweep, and the check that a rerun may resume it."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import ml_collections as mlc

from gradlab import results
from gradlab.config import flatten, to_dict
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
    "axes": list(plan.axes),
    "n_points": plan.n_points,
    "n_groups": len(plan.groups),
    "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                 "python": platform.python_version()},
    "device_kind": jax.devices()[0].device_kind,
    "n_devices": jax.device_count(),
    "git_commit": _git_commit(),
  }


def config_differences(saved: dict[str, Any], cfg: mlc.ConfigDict) -> list[str]:
  old = flatten(saved)
  new = flatten(to_dict(cfg))
  keys = sorted(set(old) | set(new))
  return [k for k in keys if _norm(old.get(k)) != _norm(new.get(k))]


def _norm(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _norm(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_norm(v) for v in value]
  return value


def check_resume(workdir: str, cfg: mlc.ConfigDict) -> None:
  """Refuses to write into a workdir whose results came from a different config."""
  if not results.chunk_files(workdir):
    return
  saved = results.read_config(workdir)
  diff = config_differences(saved.get("config", {}), cfg)
  if diff:
    raise ConfigError(
      f"workdir '{workdir}' holds results of a different config (keys differ: "
      f"{', '.join(diff)}); use a new --workdir"
    )
