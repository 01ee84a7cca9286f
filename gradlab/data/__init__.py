"""Datasets as standardized numpy arrays, and on-device minibatch sampling.

    from gradlab.data import load_dataset, sample_batch
    ds = load_dataset("mnist1d", data_dir="/tmp/tfds")   # prepared offline on first use
    xb, yb = sample_batch(key, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), 128)

Registered names: see `dataset_names()`. TFDS is imported only when a TFDS-backed
dataset is loaded.
"""

import gradlab.data.algorithmic  # noqa: F401  (registers 'token_copy', 'associative_recall', ...)
import gradlab.data.audio  # noqa: F401  (registers 'tones', 'spoken_digit')
import gradlab.data.detection_data  # noqa: F401  (registers 'multishapes', 'coco')
import gradlab.data.imagenet  # noqa: F401  (registers 'imagenet2012')
import gradlab.data.pipeline  # noqa: F401  (registers data.pipeline, data.workers, ...)
import gradlab.data.sequences  # noqa: F401  (registers 'adding', 'copy', ...)
import gradlab.data.shapes  # noqa: F401  (registers 'shapes')
import gradlab.data.text  # noqa: F401  (registers 'pydocs', 'tiny_shakespeare')
import gradlab.data.transcription  # noqa: F401  (registers 'tone_transcription', 'librispeech')
from gradlab.data import synthetic  # noqa: F401  (registers the synthetic tasks)
from gradlab.data.augment import AUGMENTATIONS
from gradlab.data.loader import (
  CLASSIFICATION,
  DATASETS,
  Dataset,
  DatasetUnavailableError,
  Task,
  dataset_names,
  feature_stats,
  load_dataset,
  make_dataset,
  read_tfds,
  standardize,
)
from gradlab.data.sampling import sample_batch

__all__ = [
  "AUGMENTATIONS",
  "CLASSIFICATION",
  "DATASETS",
  "Task",
  "make_dataset",
  "Dataset",
  "DatasetUnavailableError",
  "dataset_names",
  "feature_stats",
  "load_dataset",
  "read_tfds",
  "sample_batch",
  "standardize",
]
