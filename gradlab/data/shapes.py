"""'shapes': an offline localization task, one shape per image, with its class and box.

Each 32x32x1 image holds one filled shape of a random class, size and position on a
noisy background:

  0 rectangle, 1 ellipse, 2 triangle (apex up), 3 cross (a plus sign)

with width and height drawn independently from [SHAPE_MIN, SHAPE_MAX] pixels, its
top-left corner uniform over the positions where it fits, its brightness uniform in
[0.5, 1], plus N(0, NOISE_STD^2) noise on every pixel. The box is the TIGHT bounding box
of the shape's pixels, (x0, y0, x1, y1) in PIXEL units with exclusive ends (pixel (r, c)
is inside iff x0 <= c < x1 and y0 <= r < y1), so every coordinate lies in [0, 32].

Pixel units are the point: the targets are unbounded in the sense of Girshick 2015
("Fast R-CNN", Sec. 2.3), O(10) rather than O(1), so an L2 box loss has gradients an
order of magnitude above the classification loss's and explodes at learning rates
where smooth-L1 (Huber) does not (``configs/localization.py``).

Labels are float (N, 5) rows [class, x0, y0, x1, y1]; the dataset's task loss is
'localization' (`gradlab.losses.localization_loss`), for the 'cnn_localizer' model.
Built as gradlab's TFDS builder ``gradlab_shapes`` (array_record, generated locally,
4000 train / 1000 test, fixed seeds), read back through ``as_data_source()`` like every
gradlab dataset.

The real-data counterpart is TFDS's ``voc/2007`` (PASCAL VOC: 'objects' with 'bbox' as
normalized (ymin, xmin, ymax, xmax) and 'label' of 20 classes); it needs a download,
and a single-object subset (images with one object) to fit this task's one-box head.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from gradlab.data.loader import (
  DATASETS,
  DataDir,
  Dataset,
  Task,
  iter_records,
  make_dataset,
  read_splits,
)

IMAGE_SIZE = 32
CLASSES = ("rectangle", "ellipse", "triangle", "cross")
SHAPE_MIN, SHAPE_MAX = 6, 16     # pixels, width and height each
NOISE_STD = 0.1
NUM_TRAIN, NUM_TEST = 4000, 1000
TRAIN_SEED, TEST_SEED = 0, 1
LOCALIZATION = Task(loss="localization")


def _masks(cls: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Which pixels a shape covers, from pixel-centre coordinates u, v in the shape's own
  frame (0..1 across its width / height; outside [0, 1]: not covered)."""
  inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
  du, dv = np.abs(u - 0.5), np.abs(v - 0.5)
  by_class = np.stack([
    np.ones_like(inside),                      # rectangle
    du**2 + dv**2 <= 0.25,                     # ellipse inscribed in the box
    du <= 0.5 * v,                             # triangle, apex at the top centre
    (du <= 1 / 6) | (dv <= 1 / 6),             # cross with bars a third as thick
  ])
  pick = np.take_along_axis(by_class, cls[None, :, None, None], axis=0)[0]
  return inside & pick


def render_shapes(n: int, seed: int, size: int = IMAGE_SIZE
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """n images (n, size, size, 1) float32, classes (n,) int64, boxes (n, 4) float32
  (x0, y0, x1, y1 in pixels, the tight box of the shape's pixels)."""
  rng = np.random.default_rng(seed)
  cls = rng.integers(len(CLASSES), size=n)
  w = rng.integers(SHAPE_MIN, SHAPE_MAX + 1, size=n)
  h = rng.integers(SHAPE_MIN, SHAPE_MAX + 1, size=n)
  left = rng.integers(0, size - w + 1)
  top = rng.integers(0, size - h + 1)
  centre = np.arange(size) + 0.5
  u = (centre[None, None, :] - left[:, None, None]) / w[:, None, None]
  v = (centre[None, :, None] - top[:, None, None]) / h[:, None, None]
  mask = _masks(cls, np.broadcast_to(u, (n, size, size)), np.broadcast_to(v, (n, size, size)))
  rows, cols = mask.any(axis=2), mask.any(axis=1)
  boxes = np.stack([cols.argmax(1), rows.argmax(1),
                    size - cols[:, ::-1].argmax(1), size - rows[:, ::-1].argmax(1)], axis=1)
  brightness = rng.uniform(0.5, 1.0, size=(n, 1, 1))
  images = mask * brightness + NOISE_STD * rng.standard_normal((n, size, size))
  return images[..., None].astype(np.float32), cls, boxes.astype(np.float32)


@functools.cache
def builder_class() -> type:
  """The TFDS builder ``gradlab_shapes``, defined (and so registered with TFDS) on first
  use, which keeps TFDS out of ``import gradlab.data``."""
  import tensorflow_datasets as tfds
  from etils import epath

  class GradlabShapes(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of the 'shapes' localization task (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "4 shape classes, 32x32x1, pixel-unit tight boxes."}
    # Nothing is downloaded: point TFDS at this file for its (absent) checksums file.
    code_path = epath.Path(__file__)
    pkg_dir_path = epath.Path(__file__).parent

    def _info(self) -> tfds.core.DatasetInfo:
      return self.dataset_info_from_configs(
        description="One shape per noisy 32x32 image: its class and tight bounding box.",
        features=tfds.features.FeaturesDict({
          "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32),
          "label": tfds.features.ClassLabel(names=list(CLASSES)),
          "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        }),
        supervised_keys=("image", "label"),
      )

    def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
      del dl_manager  # generated locally
      return {"train": self._generate_examples(NUM_TRAIN, TRAIN_SEED),
              "test": self._generate_examples(NUM_TEST, TEST_SEED)}

    def _generate_examples(self, n: int, seed: int) -> Iterator[tuple[int, dict[str, Any]]]:
      images, cls, boxes = render_shapes(n, seed)
      for i in range(n):
        yield i, {"image": images[i], "label": int(cls[i]), "box": boxes[i]}

  return GradlabShapes


def read_shapes(data_dir: DataDir = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Prepares (if needed) and reads gradlab_shapes: {split: (images, labels (N, 5))}."""
  builder_class()  # registers gradlab_shapes with TFDS
  splits, _ = read_splits("gradlab_shapes", data_dir, "shapes", _read_split)
  return splits


def _read_split(source: Any, info: Any) -> tuple[np.ndarray, np.ndarray]:
  """(images float32 (N, 32, 32, 1), labels float32 (N, 5) = [class, x0, y0, x1, y1])."""
  del info
  records = list(iter_records(source))
  images = np.stack([np.asarray(r["image"], np.float32) for r in records])
  labels = np.asarray([[r["label"], *np.asarray(r["box"])] for r in records], np.float32)
  return images, labels


@DATASETS.register("shapes")
def load_shapes(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """The 'shapes' dataset: fixed splits (`seed` unused); images standardized with the
  train split's statistics, labels [class, x0, y0, x1, y1] left in pixels."""
  del seed, data_cfg
  splits = read_shapes(data_dir)
  return make_dataset("shapes", *splits["train"], *splits["test"], len(CLASSES),
                      task=LOCALIZATION)


__all__ = ["CLASSES", "builder_class", "load_shapes", "read_shapes", "render_shapes"]
