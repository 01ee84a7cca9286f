"""ImageNet through TFDS: ``imagenet2012`` (He et al. 2016's training set and 50,000
validation images), as fixed-size arrays.

Every image goes through the standard evaluation transform (Krizhevsky et al. 2012;
He et al. 2016, Sec. 3.4): the shorter side resized to ``data.image_size`` x 256 / 224,
then the central ``image_size`` x ``image_size`` crop (224: the paper's). Training adds
the usual train-time randomness on device, per sampled minibatch, with
``data.augment='crop_flip'`` (a random crop of the zero-padded image and a horizontal
flip: `gradlab.data.augment`); the random-resized crop of Szegedy et al. is not
implemented. The validation split is the test split. Labels: 1000 classes.

The whole split is held in host memory as float32, so the real ImageNet (1.28 M images)
needs the streamed path or the grain pipeline (issue 18, not built yet); with
``data.mock = N`` (`gradlab.data.mock`) N generated images per split, at TFDS's random
shapes, go through exactly this transform: the way to dry-run `configs/imagenet_resnet50.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradlab.config import register_keys
from gradlab.data.loader import (
  CATALOG_LOADERS,
  DATASETS,
  DataDir,
  Dataset,
  iter_records,
  make_dataset,
  read_splits,
)

register_keys("data", dict(image_size=224), family="imagenet", positive=("image_size",))

EVAL_RESIZE = 256 / 224  # resize the shorter side to size * 256 / 224, then centre-crop size


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The evaluation transform of one uint8 (H, W, C) image: shorter side to
  round(size * 256 / 224) (bilinear, PIL), central size x size crop; uint8 (size, size, 3)."""
  from PIL import Image

  image = np.asarray(image)
  if image.ndim == 2 or image.shape[-1] == 1:
    image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
  h, w = image.shape[:2]
  short = max(size, round(size * EVAL_RESIZE))
  scale = short / min(h, w)
  new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
  resized = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((new_w, new_h),
                                                                       Image.BILINEAR))
  top, left = (new_h - size) // 2, (new_w - size) // 2
  return resized[top:top + size, left:left + size]


def _reader(size: int):
  def read(source: Sequence[Any], info: Any) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for record in iter_records(source):
      xs.append(center_crop(record["image"], size))
      ys.append(int(record["label"]))
    return np.stack(xs).astype(np.float32), np.asarray(ys, np.int32)
  return read


CATALOG_LOADERS["imagenet2012"] = "imagenet2012"


@DATASETS.register("imagenet2012")
def load_imagenet(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """imagenet2012 at ``data.image_size`` (centre crops; validation as test)."""
  del seed
  size = int(data_cfg.image_size) if data_cfg is not None else 224
  splits, _ = read_splits("imagenet2012", data_dir, "imagenet2012", _reader(size),
                          splits=("train", "validation"))
  x_test, y_test = splits.get("validation", (None, None))
  return make_dataset("imagenet2012", *splits["train"], x_test, y_test, 1000)
