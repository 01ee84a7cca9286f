"""Synthetic classification tasks generated with numpy, no TFDS: cheap, for tests.

Each task is a pure function of `seed`: the same seed gives the same arrays, and the
default ``seed=0`` is the canonical task. `data_dir` is ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradlab.data.loader import DATASETS, DataDir, Dataset, make_dataset

NUM_TRAIN = 2048
NUM_TEST = 512
NUM_CLASSES = 10

TEACHER_DIM = 32
TEACHER_HIDDEN = 64
BLOBS_DIM = 16
BLOBS_CENTER_SCALE = 1.0  # centres ~ N(0, scale^2 I): nearest-centroid test accuracy ~0.94

# Distinct streams per task, so 'teacher' and 'gaussian_blobs' with the same seed differ.
_TEACHER_STREAM = 1
_BLOBS_STREAM = 2


def teacher_task(
  seed: int = 0,
  num_train: int = NUM_TRAIN,
  num_test: int = NUM_TEST,
  dim: int = TEACHER_DIM,
  hidden: int = TEACHER_HIDDEN,
  num_classes: int = NUM_CLASSES,
) -> Dataset:
  """Gaussian inputs labelled by a random two-layer tanh teacher.

  x ~ N(0, I_dim); label = argmax_k (tanh(x W1 + b1) W2)_k with W1_ij ~ N(0, 2/dim),
  b1_j ~ N(0, 0.01), W2_jk ~ N(0, 1/hidden). The gain 2/dim keeps tanh in its nonlinear
  range, so the labels are not a linear function of x. All draws from
  ``np.random.default_rng([seed, 1])``.
  """
  rng = np.random.default_rng([seed, _TEACHER_STREAM])
  w1 = rng.standard_normal((dim, hidden)) * np.sqrt(2.0 / dim)
  b1 = rng.standard_normal(hidden) * 0.1
  w2 = rng.standard_normal((hidden, num_classes)) / np.sqrt(hidden)
  x = rng.standard_normal((num_train + num_test, dim)).astype(np.float32)
  y = np.argmax(np.tanh(x @ w1 + b1) @ w2, axis=1)
  return make_dataset(
    "teacher", x[:num_train], y[:num_train], x[num_train:], y[num_train:], num_classes
  )


def gaussian_blobs_task(
  seed: int = 0,
  num_train: int = NUM_TRAIN,
  num_test: int = NUM_TEST,
  dim: int = BLOBS_DIM,
  num_classes: int = NUM_CLASSES,
  center_scale: float = BLOBS_CENTER_SCALE,
) -> Dataset:
  """Ten isotropic Gaussian clusters: x = mu_y + N(0, I_dim), mu_k ~ N(0, center_scale^2 I).

  Classes are balanced (example i has class i mod num_classes before a shuffle). All
  draws from ``np.random.default_rng([seed, 2])``.
  """
  rng = np.random.default_rng([seed, _BLOBS_STREAM])
  centers = rng.standard_normal((num_classes, dim)) * center_scale
  n = num_train + num_test
  y = rng.permutation(np.arange(n) % num_classes)
  x = (centers[y] + rng.standard_normal((n, dim))).astype(np.float32)
  return make_dataset(
    "gaussian_blobs", x[:num_train], y[:num_train], x[num_train:], y[num_train:], num_classes
  )


@DATASETS.register("teacher")
def _load_teacher(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  del data_dir, data_cfg
  return teacher_task(seed)


@DATASETS.register("gaussian_blobs")
def _load_gaussian_blobs(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  del data_dir, data_cfg
  return gaussian_blobs_task(seed)
