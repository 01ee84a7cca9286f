"""The per-chunk watchdog: a sweep that stops making progress ends with one line.

While chunks run, a daemon thread checks that some chunk finishes within the limit
(``sweep.chunk_timeout_s``; 0 = automatic: 20 x the slowest chunk seen so far in this
sweep, and never under `AUTO_FLOOR_S`). Compiles do not count: the clock restarts when
one ends. When the limit passes, it writes every thread's stack to
``WORKDIR/hang-<pid>.txt`` (the Python stacks by `faulthandler`; the native ones by
``gdb`` where it is installed: a hang inside XLA shows only there), prints one line
saying that the rows written so far are kept and that rerunning the same command
resumes, and ends the process with `EXIT_HUNG` (the main thread may be blocked inside
native code, so it cannot be interrupted: `os._exit`).

Why: a compiled chunk can wait forever inside XLA (issue 15: two batched LAPACK QRs on
XLA's CPU pool deadlocked; `gradlab.models.orthogonal` keeps QR out of vmapped programs).
A silent hang loses a night; this turns any such hang into a resumable stop.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import IO

AUTO_FLOOR_S = 900.0
AUTO_FACTOR = 20.0
EXIT_HUNG = 3


class Watchdog:
  """Call `busy` when chunks start running, `beat` when one finishes, `idle` before a
  compile (and `busy` after it); `stop` ends the thread."""

  def __init__(self, workdir: str, limit_s: float, poll_s: float = 1.0):
    self.workdir, self.fixed, self.poll = workdir, float(limit_s), poll_s
    self._last = time.monotonic()
    self._slowest = 0.0
    self._busy = False
    self._done = threading.Event()
    self._lock = threading.Lock()
    self._thread = threading.Thread(target=self._watch, name="gradlab-watchdog", daemon=True)
    self._thread.start()

  def limit(self) -> float:
    return self.fixed if self.fixed > 0 else max(AUTO_FLOOR_S, AUTO_FACTOR * self._slowest)

  def busy(self) -> None:
    with self._lock:
      if not self._busy:
        self._busy, self._last = True, time.monotonic()

  def idle(self) -> None:
    with self._lock:
      self._busy = False

  def beat(self) -> None:
    with self._lock:
      now = time.monotonic()
      self._slowest = max(self._slowest, now - self._last)
      self._last = now

  def stop(self) -> None:
    self._done.set()

  def _watch(self) -> None:
    while not self._done.wait(self.poll):
      with self._lock:
        waited = time.monotonic() - self._last if self._busy else 0.0
      if waited > self.limit():
        self._fire(waited)

  def _fire(self, waited: float) -> None:
    path = os.path.join(self.workdir, f"hang-{os.getpid()}.txt")
    with open(path, "w") as f:
      f.write(f"gradlab: no chunk finished for {waited:.0f} s (limit {self.limit():.0f} s)\n\n"
              "Python threads:\n")
      f.flush()
      faulthandler.dump_traceback(f, all_threads=True)
      f.write("\nNative threads (gdb):\n")
      f.flush()
      native_stacks(f)
    sys.stderr.write(
      f"gradlab: a chunk did not finish within {self.limit():.0f} s (sweep.chunk_timeout_s); "
      f"every thread's stack is in '{path}'. The rows written so far are kept: rerunning "
      f"the same command resumes.\n")
    sys.stderr.flush()
    os._exit(EXIT_HUNG)


class NoWatchdog:
  """Stands in for a `Watchdog` outside a watched block: every call does nothing."""

  def busy(self) -> None: ...

  def idle(self) -> None: ...

  def beat(self) -> None: ...


def native_stacks(out: IO[str], timeout_s: float = 90.0) -> None:
  """Appends every native thread's backtrace of this process by gdb to `out` (or why
  there is none). gdb writes straight into the file: through a pipe it would block once
  the pipe filled, since the thread reading it is one of those gdb stops."""
  gdb = shutil.which("gdb")
  if gdb is None:
    out.write("(gdb is not installed: no native stacks)\n")
    return
  try:
    subprocess.run([gdb, "-p", str(os.getpid()), "-batch", "-ex", "set pagination off",
                    "-ex", "thread apply all bt 25"], stdout=out, stderr=out,
                   stdin=subprocess.DEVNULL, timeout=timeout_s, check=False)
  except (OSError, subprocess.SubprocessError) as e:
    out.write(f"(gdb failed: {e})\n")
