"""gradlab's own offline TFDS builders: MNIST-1D and sklearn's digits.

Both builders generate their data locally (nothing is downloaded) and are written with
``file_format='array_record'``, so they prepare and read back without TensorFlow through
the same ``tfds.builder(...).as_data_source()`` path as catalog datasets.

Importing this module registers the names ``gradlab_mnist1d`` and ``gradlab_digits``
with TFDS (TFDS's registry, not gradlab's). ``gradlab.data.loader`` imports it lazily.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

_THIS_FILE = epath.Path(__file__)

# Fixed seed of the permutation that splits sklearn's 1797 digits into train and test.
DIGITS_SPLIT_SEED = 0
DIGITS_NUM_TEST = 360


class _OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base for builders whose data is generated in-process from numpy arrays.

  TFDS infers ``code_path`` (where it looks for a checksums file) with
  ``importlib_resources``, which is not a dependency of gradlab; these builders
  download nothing, so they point TFDS at this file directly. Metadata files
  (README, CITATIONS) would be read from this package's folder.
  """

  code_path = _THIS_FILE
  pkg_dir_path = _THIS_FILE.parent

  def _generate_examples(
    self, x: np.ndarray, label: np.ndarray, feature_key: str
  ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (key, example) pairs; the key is the row's index in the source arrays."""
    for i in range(len(label)):
      yield i, {feature_key: x[i], "label": int(label[i])}


class GradlabMnist1d(_OfflineBuilder):
  """MNIST-1D (Greydanus & Kobak, 2020, "Scaling down deep learning"), generated offline.

  Calls ``mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())`` (the package's
  default arguments, seed 42): 4000 train / 1000 test sequences of length 40, 10
  classes. Never calls ``get_dataset``, which would download a pickle.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "MNIST-1D from mnist1d.data.make_dataset with default args."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description="MNIST-1D: 1-D sequences of length 40 drawn from 10 digit templates.",
      features=tfds.features.FeaturesDict(
        {
          "x": tfds.features.Tensor(shape=(40,), dtype=np.float32),
          "label": tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=("x", "label"),
      homepage="https://github.com/greydanus/mnist1d",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # nothing to download
    from mnist1d import data as mnist1d_data

    # make_dataset seeds Python's and numpy's global RNGs; put them back afterwards.
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
      raw = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
    finally:
      random.setstate(py_state)
      np.random.set_state(np_state)  # noqa: NPY002
    return {
      "train": self._generate_examples(raw["x"].astype(np.float32), raw["y"], "x"),
      "test": self._generate_examples(raw["x_test"].astype(np.float32), raw["y_test"], "x"),
    }


def digits_split(num_examples: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns (train_idx, test_idx): a fixed permutation, its first 360 rows are test."""
  perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(num_examples)
  return perm[DIGITS_NUM_TEST:], perm[:DIGITS_NUM_TEST]


class GradlabDigits(_OfflineBuilder):
  """sklearn's ``load_digits``: 1797 8x8 grey images, pixel values 0..16, 10 classes.

  Stored as float32 images of shape (8, 8, 1) with the raw values. The split is a fixed
  permutation (seed ``DIGITS_SPLIT_SEED``): 1437 train / 360 test.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "sklearn digits, fixed 1437/360 split."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description="sklearn's 8x8 handwritten digits (UCI optdigits test set).",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
          "label": tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=("image", "label"),
      homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # sklearn ships the data file
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32)[..., None]
    train_idx, test_idx = digits_split(len(digits.target))
    return {
      "train": self._generate_examples(images[train_idx], digits.target[train_idx], "image"),
      "test": self._generate_examples(images[test_idx], digits.target[test_idx], "image"),
    }
