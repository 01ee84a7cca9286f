"""JAX's persistent compilation cache for sweeps: a rerun loads its executables from disk.

``sweep.compile_cache`` picks the folder: '' (default) is ``.jax_cache`` next to the
workdir (in its parent folder, so sweeps side by side share it), 'none' turns the cache
off, anything else is the folder itself. It is JAX's process-wide setting: the sweep
sets it before its first compile, and later compiles of the same process use it too.
"""

from __future__ import annotations

import os

import jax

MIN_COMPILE_SECONDS = 0.1  # executables that compiled faster than this are not stored


def cache_dir(setting: str, workdir: str) -> str | None:
  """The cache folder for ``sweep.compile_cache = setting`` (None: off)."""
  if setting.strip().lower() == "none":
    return None
  if setting:
    return os.path.abspath(os.path.expanduser(setting))
  return os.path.join(os.path.dirname(os.path.abspath(workdir)), ".jax_cache")


def configure(path: str | None) -> None:
  """Points JAX's persistent compilation cache at `path` (None: off)."""
  from jax.experimental.compilation_cache import compilation_cache

  if path == jax.config.jax_compilation_cache_dir and (path is not None) == bool(
      jax.config.jax_enable_compilation_cache):
    return
  if path is None:
    jax.config.update("jax_enable_compilation_cache", False)
  else:
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  compilation_cache.reset_cache()  # the next compile opens the cache at the new place
