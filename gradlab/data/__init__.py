"""Datasets as standardized numpy arrays, and on-device minibatch sampling.

    from gradlab.data import load_dataset, sample_batch
    ds = load_dataset("mnist1d", data_dir="/tmp/tfds")   # prepared offline on first use
    xb, yb = sample_batch(key, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), 128)

Registered names: see `dataset_names()`. TFDS is imported only when a TFDS-backed
dataset is loaded.
"""

from gradlab.data import synthetic  # noqa: F401  (registers the synthetic tasks)
from gradlab.data.loader import (
  DATASETS,
  Dataset,
  DatasetUnavailableError,
  dataset_names,
  feature_stats,
  load_dataset,
  read_tfds,
  standardize,
)
from gradlab.data.sampling import sample_batch

__all__ = [
  "DATASETS",
  "Dataset",
  "DatasetUnavailableError",
  "dataset_names",
  "feature_stats",
  "load_dataset",
  "read_tfds",
  "sample_batch",
  "standardize",
]
