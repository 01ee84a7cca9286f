"""The grain feed of ``data.pipeline = 'grain'`` (`gradlab.data.pipeline` has the
design): a `grain.python.DataLoader` over this host's pieces of a chunk's segments,
worker processes decoding and augmenting them, the main process joining each segment.
Imported only when a sweep asks for grain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import grain.python as grain
import jax
import numpy as np

from gradlab.data.pipeline import PIECE, Decoder, fetch, host_share, plan_pieces


@dataclasses.dataclass(frozen=True)
class Pieces:
  """A grain data source: item j is one piece (segment, start, record indices) of the
  segments, in order; only this host's share of each segment."""

  source: Any
  items: tuple[tuple[int | None, int, np.ndarray], ...]

  def __len__(self) -> int:
    return len(self.items)

  def __getitem__(self, j: int) -> tuple[int | None, int, list[Any]]:
    segment, start, idx = self.items[int(j)]
    return segment, start, fetch(self.source, idx)


class DecodePiece(grain.MapTransform):
  """The grain transform of a piece: its records decoded (`Decoder.decode`). The decoder
  is plain data, so worker processes receive it by pickling."""

  def __init__(self, decoder: Decoder):
    self.decoder = decoder

  def map(self, item: tuple[int | None, int, list[Any]]) -> tuple[np.ndarray, np.ndarray]:
    segment, start, records = item
    return self.decoder.decode(records, segment, start)


def _gather_hosts(x: np.ndarray, n: int, processes: int) -> np.ndarray:
  """Every host's share of an n-example segment, joined in host order."""
  from jax.experimental import multihost_utils

  width = max(hi - lo for lo, hi in (host_share(n, p, processes) for p in range(processes)))
  padded = np.zeros((width, *x.shape[1:]), x.dtype)
  padded[:len(x)] = x
  every = np.asarray(multihost_utils.process_allgather(padded))
  return np.concatenate([every[p][:hi - lo] for p, (lo, hi) in enumerate(
    host_share(n, q, processes) for q in range(processes))])


def grain_segments(source: Sequence[Any], decoder: Decoder, segments: Sequence[np.ndarray],
                   augment: bool, workers: int, share: bool = False
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """The decoded `segments` (index arrays), one (x, y) per segment, read by a grain
  DataLoader with `workers` processes. With `share` (every host of a multi-host run
  reading the same segments in lockstep, e.g. one run data-parallel across hosts), each
  host decodes its share (`host_share`) and the shares are exchanged; a sweep deals
  whole chunks to hosts instead, each reading its own chunks' segments (share off)."""
  from absl import flags

  if not flags.FLAGS.is_parsed():  # grain reads its absl flags; library use never parsed them
    flags.FLAGS.mark_as_parsed()
  process, processes = (jax.process_index(), jax.process_count()) if share else (0, 1)
  items = plan_pieces(segments, augment, process, processes)
  loader = grain.DataLoader(
    data_source=Pieces(source, items),
    sampler=grain.IndexSampler(len(items), shuffle=False, num_epochs=1, seed=0),
    operations=[DecodePiece(decoder)], worker_count=workers,
    worker_buffer_size=2)
  pieces = iter(loader)
  for idx in segments:
    lo, hi = host_share(len(idx), process, processes)
    xs, ys = [], []
    for _ in range(-(-(hi - lo) // PIECE)):
      x, y = next(pieces)
      xs.append(x)
      ys.append(y)
    x = np.concatenate(xs) if xs else np.zeros((0,), np.float32)
    y = np.concatenate(ys) if ys else np.zeros((0,), np.int32)
    if processes > 1:
      x, y = _gather_hosts(x, len(idx), processes), _gather_hosts(y, len(idx), processes)
    yield x, y
