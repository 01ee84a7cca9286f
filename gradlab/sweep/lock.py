"""One writer per workdir: an exclusive `fcntl` lock held for the whole sweep.

The first sweep into a workdir takes ``WORKDIR/.lock`` (process p of a multi-process
sweep takes ``WORKDIR/.lock-pNNN``: every process of one sweep writes its own files, as
before, while a second sweep's process p finds process p of the first one holding its
lock). The file holds the holder's pid and host. The lock is released when the sweep
returns, or by the operating system when its process dies: a lock left by a killed
sweep is free to the next one (its pid is only a name for the message).
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import IO

from gradlab.registry import ConfigError

_HELD: dict[str, IO[str]] = {}


def lock_path(workdir: str, process: int = 0) -> str:
  return os.path.join(workdir, ".lock" if process == 0 else f".lock-p{process:03d}")


def acquire(workdir: str, process: int = 0) -> str:
  """Takes the workdir's lock for this process, or raises ConfigError naming the pid
  that holds it. Taking a lock this process already holds is a no-op. Returns its path."""
  path = lock_path(workdir, process)
  if path in _HELD:
    return path
  os.makedirs(workdir, exist_ok=True)
  f = open(path, "a+")  # noqa: SIM115 - held open for the sweep's lifetime
  try:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    f.seek(0)
    holder = f.read().strip() or "unknown pid"
    f.close()
    raise ConfigError(f"workdir '{workdir}' is in use by another sweep ({holder}, lock "
                      f"'{path}'): wait for it to finish, or use another --workdir") from e
  f.seek(0)
  f.truncate()
  f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
  f.flush()
  _HELD[path] = f
  return path


def release(workdir: str, process: int = 0) -> None:
  """Releases this process's lock of the workdir (no-op when not held)."""
  f = _HELD.pop(lock_path(workdir, process), None)
  if f is not None:
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    f.close()
