"""One stored record -> one example, on the host: the per-dataset record readers of the
streamed path (`gradlab.data.stream`, both pipelines) and the host-side augmentations
(``data.host_augment``).

A reader is a small frozen dataclass, so that grain's worker processes can receive it
by pickling (`gradlab.data.pipeline`): ``example(record, rng)`` returns (x float32,
y) of one record, with the train-time augmentation when `rng` is a numpy Generator and
the evaluation transform when it is None. `READERS` maps a gradlab dataset name to a
factory ``(info, data_cfg) -> (reader, test split name, num_classes)``; names without
one read ``info.supervised_keys``.

Host augmentations (``HOST_AUGMENTS``): ``(image (H, W, C), (out_h, out_w), rng) ->
image (out_h, out_w, C)``, same dtype.
- ``none``: the evaluation transform;
- ``inception_crop``: the random-resized crop of Szegedy et al. 2015 ("Going deeper with
  convolutions", Sec. 6: patches "whose size is distributed evenly between 8% and 100%
  of the image area and whose aspect ratio is chosen randomly between 3/4 and 4/3"),
  the ImageNet training crop of He et al. 2016 and of the reference ResNet-50 recipes:
  up to 10 draws of (area fraction, log aspect ratio) until the patch fits in the image,
  else the central square; resized (bilinear) to the output size, then a horizontal flip
  with probability 1/2.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradlab.registry import ConfigError, Registry

HostAugment = Callable[[np.ndarray, tuple[int, int], np.random.Generator], np.ndarray]
HOST_AUGMENTS: Registry[HostAugment] = Registry("host augmentation")

INCEPTION_AREA = (0.08, 1.0)        # Szegedy et al. 2015, Sec. 6
INCEPTION_RATIO = (3 / 4, 4 / 3)
INCEPTION_TRIES = 10


def resize(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of an (H, W, C) image (PIL): uint8 RGB in one call, anything else
  channel by channel as float32, cast back to the input dtype."""
  from PIL import Image

  out_h, out_w = out_hw
  if image.shape[:2] == (out_h, out_w):
    return image
  if image.dtype == np.uint8 and image.shape[-1] == 3:
    return np.asarray(Image.fromarray(image).resize((out_w, out_h), Image.BILINEAR))
  channels = [np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F")
                         .resize((out_w, out_h), Image.BILINEAR))
              for c in range(image.shape[-1])]
  return np.stack(channels, axis=-1).astype(image.dtype)


@HOST_AUGMENTS.register("none")
def no_host_augment(image: np.ndarray, out_hw: tuple[int, int],
                    rng: np.random.Generator) -> np.ndarray:
  del rng
  return resize(image, out_hw)


def inception_box(height: int, width: int, rng: np.random.Generator
                  ) -> tuple[int, int, int, int]:
  """(top, left, crop height, crop width) of one random-resized crop (module docstring)."""
  area = height * width
  log_lo, log_hi = math.log(INCEPTION_RATIO[0]), math.log(INCEPTION_RATIO[1])
  for _ in range(INCEPTION_TRIES):
    target = area * rng.uniform(*INCEPTION_AREA)
    ratio = math.exp(rng.uniform(log_lo, log_hi))
    crop_w = int(round(math.sqrt(target * ratio)))
    crop_h = int(round(math.sqrt(target / ratio)))
    if 0 < crop_w <= width and 0 < crop_h <= height:
      top = int(rng.integers(0, height - crop_h + 1))
      left = int(rng.integers(0, width - crop_w + 1))
      return top, left, crop_h, crop_w
  side = min(height, width)
  return (height - side) // 2, (width - side) // 2, side, side


@HOST_AUGMENTS.register("inception_crop")
def inception_crop(image: np.ndarray, out_hw: tuple[int, int],
                   rng: np.random.Generator) -> np.ndarray:
  """The random-resized crop and flip (module docstring)."""
  top, left, crop_h, crop_w = inception_box(image.shape[0], image.shape[1], rng)
  out = resize(image[top:top + crop_h, left:left + crop_w], out_hw)
  return out[:, ::-1] if rng.random() < 0.5 else out


def as_image(x: Any) -> np.ndarray:
  """An (H, W, C) array of a record's image (grey (H, W) gets C = 1)."""
  x = np.asarray(x)
  return x[..., None] if x.ndim == 2 else x


@dataclasses.dataclass(frozen=True)
class Supervised:
  """A record's ``feature_key`` as float32 x and its ``label_key`` as an int32 label;
  with `augment` (a `HOST_AUGMENTS` name) applied at the stored size in training."""

  feature_key: str
  label_key: str
  augment: str = "none"

  def example(self, record: Mapping[str, Any], rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(record[self.feature_key])
    if rng is not None and self.augment != "none":
      x = HOST_AUGMENTS.get(self.augment)(as_image(x), as_image(x).shape[:2], rng)
      x = x.reshape(np.shape(record[self.feature_key]))
    return x.astype(np.float32), np.int32(record[self.label_key])


@dataclasses.dataclass(frozen=True)
class Preloaded:
  """Records that are already examples (``{'x', 'y'}`` of an in-memory dataset)."""

  def example(self, record: Mapping[str, Any], rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    del rng
    return record["x"], record["y"]


Reader = Any  # an object with example(record, rng | None) -> (x float32, y)
ReaderFactory = Callable[[Any, Any], tuple[Reader, str, int]]
READERS: Registry[ReaderFactory] = Registry("record reader")


def reader_for(name: str, info: Any, data_cfg: Any) -> tuple[Reader, str, int]:
  """(reader, test split, num_classes) of dataset `name` (`READERS`, else the
  supervised keys of its TFDS `info`)."""
  if name in READERS.names():
    return READERS.get(name)(info, data_cfg)
  if not info.supervised_keys:
    raise ConfigError(f"dataset '{name}' has no streamed reader (data.stream > 0 reads "
                      f"(feature, label) records): set data.stream=0")
  feature_key, label_key = info.supervised_keys
  augment = str(data_cfg.get("host_augment", "none")) if data_cfg is not None else "none"
  return (Supervised(feature_key, label_key, augment), "test",
          int(info.features[label_key].num_classes))
