"""ImageNet through TFDS: ``imagenet2012`` (He et al. 2016's training set and 50,000
validation images), as fixed-size arrays.

Every image goes through the standard evaluation transform (Krizhevsky et al. 2012;
He et al. 2016, Sec. 3.4): the shorter side resized to ``data.image_size`` x 256 / 224,
then the central ``image_size`` x ``image_size`` crop (224: the paper's). The validation
split is the test split. Labels: 1000 classes.

Two ways in:
- in memory (``data.stream = 0``): every train image's centre crop held in host and
  device memory as float32; train-time randomness on device per sampled minibatch with
  ``data.augment='crop_flip'`` (a random crop of the zero-padded image and a flip:
  `gradlab.data.augment`). For mock data and small subsets.
- streamed (``data.stream = N``, best with ``data.pipeline='grain'``): N train images
  per segment decoded on the host (`ImagenetReader`), with the random-resized crop and
  flip of ``data.host_augment='inception_crop'`` (`gradlab.data.records`), worker
  processes doing the decoding (`gradlab.data.pipeline`). The real ImageNet (1.28 M
  images) goes this way; ``data.test_size`` keeps the first N validation images.

With ``data.mock = N`` (`gradlab.data.mock`) N generated images per split, at TFDS's
random shapes, go through exactly these transforms: the way to dry-run
`configs/imagenet_resnet50.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
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
from gradlab.data.records import HOST_AUGMENTS, READERS

register_keys("data", dict(image_size=224), family="imagenet", positive=("image_size",))

EVAL_RESIZE = 256 / 224  # resize the shorter side to size * 256 / 224, then centre-crop size


def rgb(image: Any) -> np.ndarray:
  """A uint8 (H, W, 3) image of a record's image (grey ones repeated over 3 channels)."""
  image = np.asarray(image)
  if image.ndim == 2 or image.shape[-1] == 1:
    image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
  return image.astype(np.uint8)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The evaluation transform of one uint8 (H, W, C) image: shorter side to
  round(size * 256 / 224) (bilinear, PIL), central size x size crop; uint8 (size, size, 3)."""
  from PIL import Image

  image = rgb(image)
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


@dataclasses.dataclass(frozen=True)
class ImagenetReader:
  """One imagenet2012 record -> (float32 (size, size, 3), int32 label): the centre crop
  for evaluation, the `HOST_AUGMENTS` transform `augment` in training."""

  size: int
  augment: str = "none"

  def example(self, record: Mapping[str, Any], rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    if rng is None or self.augment == "none":
      image = center_crop(record["image"], self.size)
    else:
      image = HOST_AUGMENTS.get(self.augment)(rgb(record["image"]), (self.size, self.size), rng)
    return image.astype(np.float32), np.int32(record["label"])


@READERS.register("imagenet2012")
def imagenet_reader(info: Any, data_cfg: Any) -> tuple[ImagenetReader, str, int]:
  """The streamed path's reader: ``data.image_size``, ``data.host_augment``."""
  del info
  return (ImagenetReader(int(data_cfg.image_size), str(data_cfg.host_augment)),
          "validation", 1000)


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
