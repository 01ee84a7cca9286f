"""Streaming a train split that does not fit in device memory (``data.stream = N``).

With ``data.stream = 0`` (the default) the whole train split is put on device once and
every step samples its minibatch there. With ``data.stream = N > 0`` the sweep engine
trains in SEGMENTS: before each segment the host reads N train examples from
``tfds.data_source`` (random access into the array_record files, no TensorFlow), puts
them on device, and the segment's steps sample their minibatches from those N. A
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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from gradlab.data import loader

STATS_EXAMPLES = 8192


class Stream(NamedTuple):
  """dataset: the eval slice as its train split, the whole test split, num_classes and
  task; read(indices) -> standardized (x, y) train examples; num_train: split size."""

  dataset: loader.Dataset
  num_train: int
  read: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def open_stream(name: str, data_dir: loader.DataDir, data_cfg: Any, eval_size: int,
                seed: int = 0) -> Stream:
  """A `Stream` over dataset `name`'s train split (see the module docstring)."""
  loader.DATASETS.get(name)  # unknown names: one clear error
  tfds_name = loader.TFDS_NAMES.get(name)
  if tfds_name is None:
    ds = loader.load_dataset(name, data_dir, seed, data_cfg)
    n = len(ds.x_train)
    head = n if eval_size <= 0 else min(eval_size, n)
    lite = ds._replace(x_train=ds.x_train[:head], y_train=ds.y_train[:head])
    return Stream(lite, n, lambda idx: (ds.x_train[idx], ds.y_train[idx]))
  builder = loader.prepared_builder(tfds_name, data_dir, name)
  feature_key, label_key = builder.info.supervised_keys
  sources = builder.as_data_source()
  train = sources["train"]
  n = len(train)
  x_stats, _ = loader.read_records(train, range(min(n, STATS_EXAMPLES)), feature_key,
                                   label_key)
  mean, std = loader.feature_stats(x_stats)

  def read(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = loader.read_records(train, idx, feature_key, label_key)
    return ((x - mean) / std).astype(np.float32), y

  head = n if eval_size <= 0 else min(eval_size, n)
  x_eval, y_eval = read(np.arange(head))
  x_test = y_test = None
  if "test" in sources:
    x_test, y_test = read_all(sources["test"], feature_key, label_key, mean, std)
  lite = loader.Dataset(name, x_eval, y_eval, x_test, y_test,
                        builder.info.features[label_key].num_classes)
  return Stream(lite, n, read)


def read_all(source: Any, feature_key: str, label_key: str, mean: np.ndarray,
             std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x, y = loader.read_records(source, range(len(source)), feature_key, label_key)
  return ((x - mean) / std).astype(np.float32), y


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
