"""How a streamed train split's segments are read: in the main process, or by a grain
pipeline (``data.pipeline``).

A streamed sweep (``data.stream = N``, `gradlab.data.stream`) trains each chunk of lanes
in segments of N train examples. Both pipelines produce the same segments, example for
example and bit for bit (a test holds this): segment s holds the records at
`gradlab.data.stream.segment_indices` (s), each decoded by the dataset's record reader
(`gradlab.data.records`), standardized with train statistics and, in training, augmented
on the host (``data.host_augment``) with a numpy Generator seeded by (train.seed,
segment, position): no draw depends on which process decodes it.

- ``memory`` (the default): the main process decodes a segment when the runner asks
  for it, while the device trains on the previous one (JAX dispatches asynchronously).
- ``grain``: a `grain.python.DataLoader` over the segments' records
  (`gradlab.data.grain_feed`). ``data.workers``
  worker processes (-1: one per host core) decode and augment pieces of `PIECE`
  consecutive examples, ahead of the runner (grain keeps them in order); the main
  process joins each segment's pieces and puts the segment on device while the
  previous one trains. A multi-host sweep deals the streamed chunks to the hosts
  (`gradlab.sweep.deal`), each reading its own chunks' segments. For hosts that read
  the same segments in lockstep (one run data-parallel across hosts),
  `grain_feed.grain_segments(share=True)` has each host decode a contiguous 1/P of
  every segment and exchange the shares
  (`jax.experimental.multihost_utils.process_allgather`).

The in-memory path (``data.stream = 0``: the whole train split on device) stays the
default for data that fits; ``data.pipeline = 'grain'`` asks for a streamed split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradlab.config import register_keys
from gradlab.data.records import HOST_AUGMENTS
from gradlab.registry import ConfigError

PIPELINES = ("memory", "grain")
PIECE = 32  # examples per grain work item (one inter-process transfer)


def _check_pipeline(point: Mapping[str, Any]) -> None:
  """data.pipeline is one of PIPELINES and 'grain' streams; data.host_augment is a
  HOST_AUGMENTS name and needs a streamed split; data.workers >= -1."""
  pipeline = point["data.pipeline"]
  if pipeline not in PIPELINES:
    raise ConfigError(f"config key 'data.pipeline' is '{pipeline}'; known: "
                      f"{', '.join(PIPELINES)}")
  streamed = int(point["data.stream"]) > 0
  if pipeline == "grain" and not streamed:
    raise ConfigError("config key 'data.pipeline' is 'grain' but 'data.stream' is 0: grain "
                      "feeds a streamed train split; set data.stream to the examples per "
                      "segment (more than the split holds: the whole split)")
  augment = point["data.host_augment"]
  if augment not in HOST_AUGMENTS:
    raise ConfigError(f"config key 'data.host_augment': {HOST_AUGMENTS.unknown_message(augment)}")
  if augment != "none" and not streamed:
    raise ConfigError(f"config key 'data.host_augment' is '{augment}' but 'data.stream' is "
                      "0: host augmentation redraws examples per segment; set data.stream")
  if int(point["data.workers"]) < -1:
    raise ConfigError(f"config key 'data.workers' is {point['data.workers']}; -1 (one per "
                      "host core), 0 (the main process) or a number of processes")


PIPELINE_KEYS: dict[str, Any] = register_keys("data", dict(
  pipeline="memory",    # memory | grain: how streamed segments are read
  workers=-1,           # grain worker processes; -1: one per host core; 0: main process
  host_augment="none",  # none | inception_crop: train-time augmentation on the host
  test_size=0,          # test examples kept (the first N of the test split); 0: all
), family="pipeline", non_negative=("test_size",), check=_check_pipeline)


@dataclasses.dataclass(frozen=True)
class Decoder:
  """Records -> standardized (x, y) arrays: `reader` per record (augmented in training
  with the Generator of (seed, segment, position)), then (x - mean) / std as float32."""

  reader: Any
  mean: np.ndarray
  std: np.ndarray
  seed: int

  def decode(self, records: Sequence[Any], segment: int | None, start: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """`records` at positions start, start + 1, ... of `segment` (None: evaluation)."""
    xs, ys = [], []
    # per example (stats shaped for a batch: drop their leading 1), so no segment-sized
    # float64 temporary; elementwise, so the same numbers as standardizing the stack
    mean, std = (a[0] if np.ndim(a) else a for a in (self.mean, self.std))
    for k, record in enumerate(records):
      rng = None if segment is None else np.random.default_rng([self.seed, segment, start + k])
      x, y = self.reader.example(record, rng)
      xs.append(((x - mean) / std).astype(np.float32))
      ys.append(y)
    return np.stack(xs), np.stack(ys)


def fetch(source: Sequence[Any], idx: Sequence[int]) -> list[Any]:
  """The records `idx` of a data source (batched where it reads in batches)."""
  idx = [int(i) for i in idx]
  if hasattr(source, "__getitems__"):
    return list(source.__getitems__(idx))
  return [source[i] for i in idx]


def read(source: Sequence[Any], decoder: Decoder, idx: np.ndarray, segment: int | None
         ) -> tuple[np.ndarray, np.ndarray]:
  """The decoded records `idx` of `source`, in the main process."""
  return decoder.decode(fetch(source, idx), segment, 0)


def host_share(n: int, process: int, processes: int) -> tuple[int, int]:
  """[lo, hi) of the examples of an n-example segment that host `process` decodes."""
  bounds = np.linspace(0, n, processes + 1).round().astype(int)
  return int(bounds[process]), int(bounds[process + 1])


def plan_pieces(segments: Sequence[np.ndarray], augment: bool, process: int = 0,
                processes: int = 1, piece: int = PIECE
                ) -> tuple[tuple[int | None, int, np.ndarray], ...]:
  """This host's pieces of `segments` (index arrays): (segment or None, start, idx)."""
  items = []
  for s, idx in enumerate(segments):
    lo, hi = host_share(len(idx), process, processes)
    for start in range(lo, hi, piece):
      items.append((s if augment else None, start, np.asarray(idx[start:min(hi, start + piece)])))
  return tuple(items)
