"""The live view: index.html rewritten while a sweep runs.

`LiveIndex` is the sweep's after-chunk hook (`gradlab.sweep.engine.run_sweep`'s
``on_chunk``): after a chunk's files are written it rewrites WORKDIR/index.html as a
partial page (`write_index(partial=True)`: "Partial: n of N runs done", reloading
itself). Rewriting reads every result written so far, so on a long sweep it is
throttled: after the first chunk, at most once every `min_interval_s`, and never more
often than keeps its own cost under `max_share` of the sweep's time. The final page
(not partial) is written with the figures when the sweep ends.
"""

from __future__ import annotations

import time

import pandas as pd

from gradlab.viz.explorer.page import write_index


class LiveIndex:
  """Callable after each chunk (module docstring)."""

  def __init__(self, workdir: str, min_interval_s: float = 5.0, max_share: float = 0.05):
    self.workdir = workdir
    self.min_interval_s = float(min_interval_s)
    self.max_share = float(max_share)
    self.writes = 0
    self._next = 0.0

  def __call__(self, rows: pd.DataFrame) -> None:
    del rows  # the page reads every chunk on disk, this one included
    now = time.monotonic()
    if now < self._next:
      return
    write_index(self.workdir, partial=True)
    spent = time.monotonic() - now
    self.writes += 1
    self._next = time.monotonic() + max(self.min_interval_s, spent / self.max_share)
