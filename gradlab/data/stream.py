"""Streaming a train split that does not fit in device memory (``data.stream = N``).

With ``data.stream = 0`` (the default) the whole train split is put on device once and
every step samples its minibatch there. With ``data.stream = N > 0`` the sweep engine
trains in SEGMENTS: the host reads N train examples from ``tfds.data_source`` (random
access into the array_record files, no TensorFlow), decodes them with the dataset's
record reader (`gradlab.data.records`: e.g. ImageNet's crops, ``data.host_augment``),
puts them on device, and the segment's steps sample their minibatches from those N.
Who decodes is ``data.pipeline`` (`gradlab.data.pipeline`): the main process, or grain
worker processes. A
segment is `blocks_per_segment` log blocks long, so each streamed example is drawn about
once per segment. Every lane of a chunk shares the segment (lanes differ only by their
hyperparameters and seeds).

Segment i holds the examples `segment_indices(num_train, N, i, seed)`: N distinct
indices drawn uniformly; with N >= the split's size, the whole split in stored order,
which makes a streamed run equal to an in-memory one (a test holds this).

What stays on device for the whole run: the eval slice (the first ``train.eval_size``
train examples, for initial/final loss and the chance level) and the test split.
Standardization uses per-channel statistics of the first `STATS_EXAMPLES` train
examples (all of them for smaller splits, matching `gradlab.data.load_dataset`).
Datasets without TFDS files (synthetic, generated) stream from their in-memory arrays.
With ``data.mock = N`` a catalog dataset streams from N generated records per split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from gradlab.data import loader, mock, pipeline, records
from gradlab.host_devices import cores

STATS_EXAMPLES = 8192


class Stream(NamedTuple):
  """dataset: the eval slice as its train split, the (first ``data.test_size``) test
  split, num_classes and task; segments(index arrays) -> an iterator of standardized
  (x, y) train segments, in order (`gradlab.data.pipeline`); num_train: split size."""

  dataset: loader.Dataset
  num_train: int
  segments: Callable[[Sequence[np.ndarray]], Iterator[tuple[np.ndarray, np.ndarray]]]


class _Opened(NamedTuple):
  train: Sequence[Any]
  test: Sequence[Any] | None
  reader: Any
  num_classes: int
  task: loader.Task
  standardized: bool  # records already standardized (an in-memory dataset)


class _ArrayRecords:
  """An in-memory dataset's train or test arrays as a data source of {'x', 'y'} records."""

  def __init__(self, x: np.ndarray, y: np.ndarray):
    self.x, self.y = x, y

  def __len__(self) -> int:
    return len(self.x)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return {"x": self.x[i], "y": self.y[i]}


def _open(name: str, data_dir: loader.DataDir, data_cfg: Any, seed: int) -> _Opened:
  """The train and test data sources of dataset `name` and how to read their records:
  TFDS files through ``data_source`` (or, with ``data.mock``, the mock records), else the
  loaded in-memory arrays."""
  tfds_name = loader.TFDS_NAMES.get(name) or loader.CATALOG_LOADERS.get(name)
  if tfds_name is None:
    ds = loader.load_dataset(name, data_dir, seed, data_cfg)
    test = None if ds.x_test is None else _ArrayRecords(ds.x_test, ds.y_test)
    return _Opened(_ArrayRecords(ds.x_train, ds.y_train), test, records.Preloaded(),
                   ds.num_classes, ds.task, True)
  def keep(source: Any, info: Any) -> Any:
    """The split's data source; mock records exist only inside the mock context, so
    those are read into a list."""
    del info
    return pipeline.fetch(source, range(len(source))) if mock.active() else source

  with mock.serving(int(data_cfg.get("mock", 0)) if data_cfg is not None else 0):
    sources, info = loader.read_splits(tfds_name, data_dir, name, keep,
                                       ("train", "test", "validation"))
  reader, test_split, num_classes = records.reader_for(name, info, data_cfg)
  return _Opened(sources["train"], sources.get(test_split), reader, num_classes,
                 loader.CLASSIFICATION, False)


def open_stream(name: str, data_dir: loader.DataDir, data_cfg: Any, eval_size: int,
                seed: int = 0) -> Stream:
  """A `Stream` over dataset `name`'s train split (see the module docstring), read by
  the pipeline ``data.pipeline`` names (`gradlab.data.pipeline`)."""
  loader.DATASETS.get(name)  # unknown names: one clear error
  opened = _open(name, data_dir, data_cfg, seed)
  train, n = opened.train, len(opened.train)
  identity = pipeline.Decoder(opened.reader, np.float32(0), np.float32(1), seed)
  if opened.standardized:
    decoder = identity
  else:
    x_stats, _ = pipeline.read(train, identity, np.arange(min(n, STATS_EXAMPLES)), None)
    mean, std = loader.feature_stats(x_stats)
    decoder = pipeline.Decoder(opened.reader, mean, std, seed)
  kind = str(data_cfg.get("pipeline", "memory")) if data_cfg is not None else "memory"
  workers = int(data_cfg.get("workers", -1)) if data_cfg is not None else -1
  augment = data_cfg is not None and str(data_cfg.get("host_augment", "none")) != "none"

  def segments(index_lists: Sequence[np.ndarray], source: Sequence[Any] = train,
               train_time: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if kind == "grain":
      from gradlab.data import grain_feed

      return grain_feed.grain_segments(source, decoder, index_lists, train_time and augment,
                                       cores() if workers < 0 else workers)
    return (pipeline.read(source, decoder, idx, s if train_time and augment else None)
            for s, idx in enumerate(index_lists))

  head = n if eval_size <= 0 else min(eval_size, n)
  x_eval, y_eval = next(segments([np.arange(head)], train_time=False))
  x_test = y_test = None
  if opened.test is not None:
    test_size = int(data_cfg.get("test_size", 0)) if data_cfg is not None else 0
    m = len(opened.test) if test_size <= 0 else min(test_size, len(opened.test))
    x_test, y_test = next(segments([np.arange(m)], opened.test, train_time=False))
  lite = loader.Dataset(name, x_eval, y_eval, x_test, y_test, opened.num_classes,
                        opened.task)
  return Stream(lite, n, segments)


def segment_indices(num_train: int, size: int, segment: int, seed: int = 0) -> np.ndarray:
  """The train indices of segment `segment`: `size` distinct ones drawn uniformly
  (sorted, for sequential reads), or every index in order when size >= num_train."""
  if size >= num_train:
    return np.arange(num_train)
  rng = np.random.default_rng([seed, segment])
  return np.sort(rng.choice(num_train, size, replace=False))


def blocks_per_segment(size: int, batch_size: int, log_every: int, diag_blocks: int) -> int:
  """Log blocks per segment: about size / batch_size steps (each streamed example drawn
  about once), at least one block, and a multiple of the diagnostics interval."""
  steps = size / max(batch_size, 1) if batch_size > 0 else 1
  blocks = max(1, round(steps / log_every))
  unit = max(diag_blocks, 1)
  return max(unit, (blocks // unit) * unit)
