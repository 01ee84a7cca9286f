"""Detection datasets: 'multishapes' (offline, generated) and 'coco' (TFDS ``coco/2017``).

Both give float labels (N, M, 5): one row [class, x0, y0, x1, y1] per object, boxes in
PIXELS of the model's input with exclusive ends (x0 <= column < x1), padded to M =
``data.max_objects`` rows with class -1 (and zero coordinates); the task's loss is
'detection' (`gradlab.detection`), for the 'detector' model.

'multishapes' (64 x 64 x 1, 4000 train / 500 test, draws fixed by the load seed, the
train split from ``default_rng([seed, 0])`` and the test split from ``[seed, 1]``): each
image holds 1 to min(4, M) shapes (number uniform), of the 4 classes of 'shapes'
(`gradlab.data.shapes`: rectangle, ellipse, triangle, cross, drawn by its `_masks`),
width and height each uniform in [12, 28] pixels, placed uniformly where they fit and
do not touch a shape already placed (up to 50 tries; a shape that finds no place is left
out), brightness uniform in [0.5, 1] on a black background, plus N(0, 0.1^2) noise.
Boxes are the tight boxes of each shape's pixels. Pixel units on purpose, as in 'shapes':
FCOS's regression targets (l, t, r, b) are then 0 to 28 pixels, so an L2 box loss has
gradients an order of magnitude above the focal loss's and explodes at learning rates
where smooth L1 and GIoU (scale-free) do not (configs/coco_detection.py).

'coco': TFDS's ``coco/2017`` (Lin et al. 2014; 118,287 train, 5,000 validation images as
the test split; 80 classes). Every record goes through `decode_coco`: the image
letterboxed to ``data.image_size`` (longer side resized to it, bilinear, pasted at the
top left of a black square), grey images made RGB; boxes from TFDS's normalized (ymin,
xmin, ymax, xmax) to pixels of the resized image; crowd boxes and empty boxes dropped;
the M largest kept. Reading the real split needs it prepared in ``data.data_dir`` (TFDS
needs TensorFlow to build coco: ``tfds build coco/2017 --file_format=array_record
--data_dir=DIR`` on a machine with network and tensorflow, then copy DIR/coco over); the
whole split is held in memory (118,287 x 64 x 64 x 3 float32 is 5.8 GB). With
``data.mock = N`` the records are TFDS's mock records of the builder's own features
(declared in `COCO_FEATURES` for `gradlab.data.mock`, since the builder itself needs
TensorFlow), decoded by the same `decode_coco`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradlab.config import register_keys
from gradlab.data import mock
from gradlab.data.loader import (
  CATALOG_LOADERS,
  DATASETS,
  DataDir,
  Dataset,
  Task,
  iter_records,
  make_dataset,
  read_splits,
)
from gradlab.data.shapes import CLASSES, _masks
from gradlab.registry import ConfigError

DETECTION_DATASETS = ("multishapes", "coco")


def _check_point(point: Mapping[str, Any]) -> None:
  """Detection datasets take no on-device augmentation: crop_flip moves the image, not
  its boxes."""
  if point["data.name"] in DETECTION_DATASETS and point["data.augment"] != "none":
    raise ConfigError(f"config key 'data.augment' must be 'none' for the detection dataset "
                      f"'{point['data.name']}' (crop_flip would move the image but not its "
                      f"boxes), got '{point['data.augment']}'")


DETECTION_DATA_KEYS: dict[str, Any] = register_keys("data", dict(
  max_objects=16,    # M: label rows per image (objects beyond: the largest M kept)
), family="detection_data", positive=("max_objects",), check=_check_point)

DETECTION = Task(loss="detection")
PAD_ROW = (-1.0, 0.0, 0.0, 0.0, 0.0)

MULTI_SIZE = 64
MULTI_MAX = 4                  # shapes per image at most
MULTI_MIN_SIDE, MULTI_MAX_SIDE = 12, 28
MULTI_NOISE = 0.1
MULTI_TRAIN, MULTI_TEST = 4000, 500
PLACE_TRIES = 50

COCO_TFDS = "coco/2017"
COCO_CLASSES = 80


def pad_objects(rows: np.ndarray, max_objects: int) -> np.ndarray:
  """(n, 5) object rows -> (max_objects, 5) float32, padded with `PAD_ROW`; beyond
  max_objects, the rows of largest box area are kept (in their order)."""
  rows = np.asarray(rows, np.float64).reshape(-1, 5)
  if len(rows) > max_objects:
    area = (rows[:, 3] - rows[:, 1]) * (rows[:, 4] - rows[:, 2])
    rows = rows[np.sort(np.argsort(-area, kind="stable")[:max_objects])]
  out = np.tile(np.asarray(PAD_ROW, np.float32), (max_objects, 1))
  out[:len(rows)] = rows
  return out


# --- multishapes --------------------------------------------------------------------------

def _place(rng: np.random.Generator, w: np.ndarray, h: np.ndarray, size: int
           ) -> np.ndarray:
  """(left, top) per shape (k, 2), -1 where a shape found no place: uniform where it
  fits, its rectangle at least one pixel from those already placed."""
  placed: list[tuple[int, int, int, int]] = []
  out = np.full((len(w), 2), -1, np.int64)
  for j in range(len(w)):
    for _ in range(PLACE_TRIES):
      left, top = int(rng.integers(0, size - w[j] + 1)), int(rng.integers(0, size - h[j] + 1))
      box = (left, top, left + int(w[j]), top + int(h[j]))
      if all(box[0] > b[2] or b[0] > box[2] or box[1] > b[3] or b[1] > box[3] for b in placed):
        placed.append(box)
        out[j] = (left, top)
        break
  return out


def render_multishapes(n: int, seed: Sequence[int] | int, max_objects: int = MULTI_MAX,
                       size: int = MULTI_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """n images (n, size, size, 1) float32 and labels (n, max_objects, 5) float32 (module
  docstring); deterministic in `seed`."""
  rng = np.random.default_rng(seed)
  count = rng.integers(1, min(MULTI_MAX, max_objects) + 1, size=n)
  cls = rng.integers(len(CLASSES), size=(n, MULTI_MAX))
  w = rng.integers(MULTI_MIN_SIDE, MULTI_MAX_SIDE + 1, size=(n, MULTI_MAX))
  h = rng.integers(MULTI_MIN_SIDE, MULTI_MAX_SIDE + 1, size=(n, MULTI_MAX))
  brightness = rng.uniform(0.5, 1.0, size=(n, MULTI_MAX))
  corners = np.full((n, MULTI_MAX, 2), -1, np.int64)
  for i in range(n):
    corners[i, :count[i]] = _place(rng, w[i, :count[i]], h[i, :count[i]], size)
  images = np.zeros((n, size, size), np.float32)
  labels = np.tile(np.asarray(PAD_ROW, np.float32), (n, max_objects, 1))
  filled = np.zeros(n, np.int64)
  for j in range(MULTI_MAX):
    on = np.nonzero(corners[:, j, 0] >= 0)[0]
    mask = _shape_masks(cls[on, j], corners[on, j], w[on, j], h[on, j], size)
    images[on] = np.maximum(images[on], mask * brightness[on, j, None, None])
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    labels[on, filled[on]] = np.stack([
      cls[on, j], cols.argmax(1), rows.argmax(1), size - cols[:, ::-1].argmax(1),
      size - rows[:, ::-1].argmax(1)], axis=1)
    filled[on] += 1
  images += MULTI_NOISE * rng.standard_normal(images.shape, np.float32)
  return images[..., None], labels


def _shape_masks(cls: np.ndarray, corner: np.ndarray, w: np.ndarray, h: np.ndarray,
                 size: int) -> np.ndarray:
  """(k, size, size) bool: the pixels of k shapes (`shapes._masks`, pixel centres in
  each shape's frame), in chunks of 512 to stay in cache."""
  centre = np.arange(size, dtype=np.float32) + 0.5
  out = np.zeros((len(cls), size, size), bool)
  for s in range(0, len(cls), 512):
    c = slice(s, s + 512)
    u = (centre[None, None, :] - corner[c, 0, None, None]) / w[c, None, None]
    v = (centre[None, :, None] - corner[c, 1, None, None]) / h[c, None, None]
    shape = (len(u), size, size)
    out[c] = _masks(cls[c], np.broadcast_to(u, shape), np.broadcast_to(v, shape))
  return out


@DATASETS.register("multishapes")
def load_multishapes(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """'multishapes' (module docstring): generated at load, `data_dir` unused; images
  standardized with the train split's statistics, boxes left in pixels."""
  del data_dir
  m = int(data_cfg.max_objects) if data_cfg is not None else DETECTION_DATA_KEYS["max_objects"]
  train = render_multishapes(MULTI_TRAIN, [seed, 0], m)
  test = render_multishapes(MULTI_TEST, [seed, 1], m)
  return make_dataset("multishapes", *train, *test, len(CLASSES), task=DETECTION)


# --- coco ---------------------------------------------------------------------------------

def coco_features() -> Any:
  """coco/2017's features as its TFDS builder declares them (tensorflow_datasets/
  object_detection/coco.py, ``Coco._info`` without panoptic); equal to
  ``tfds.builder('coco/2017').info.features`` (checked with tensorflow 2.21, TFDS 4.9)."""
  import tensorflow_datasets as tfds

  return tfds.features.FeaturesDict({
    "image": tfds.features.Image(encoding_format="jpeg"),
    "image/filename": tfds.features.Text(),
    "image/id": np.int64,
    "objects": tfds.features.Sequence({
      "id": np.int64,
      "area": np.int64,
      "bbox": tfds.features.BBoxFeature(),
      "label": tfds.features.ClassLabel(num_classes=COCO_CLASSES),
      "is_crowd": np.bool_,
    }),
  })


COCO_FEATURES = mock.DECLARED_FEATURES.register(COCO_TFDS)(coco_features)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, int, int]:
  """uint8 (H, W[, C]) -> (uint8 (size, size, 3), new width, new height): the longer
  side resized to `size` (bilinear, PIL), pasted at the top left of a black square."""
  from PIL import Image

  image = np.asarray(image, np.uint8)
  if image.ndim == 2 or image.shape[-1] == 1:
    image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
  h, w = image.shape[:2]
  scale = size / max(h, w)
  new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
  out = np.zeros((size, size, 3), np.uint8)
  out[:new_h, :new_w] = np.asarray(Image.fromarray(image).resize((new_w, new_h),
                                                                 Image.BILINEAR))
  return out, new_w, new_h


def decode_coco(record: dict[str, Any], size: int, max_objects: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """One coco/2017 record -> (image float32 (size, size, 3), labels (max_objects, 5)).
  The real and the mock records alike; each box's corners are ordered (TFDS's mock draws
  them at random; real boxes are already ordered) and the objects' fields are read to
  their shortest length (the mock draws each field's length apart)."""
  image, new_w, new_h = letterbox(record["image"], size)
  objects = record["objects"]
  n = min(len(np.asarray(objects[k])) for k in ("bbox", "label", "is_crowd"))
  bbox = np.asarray(objects["bbox"], np.float64).reshape(-1, 4)[:n]
  keep = ~np.asarray(objects["is_crowd"], bool)[:n]
  ys, xs = np.sort(bbox[:, 0::2], axis=1) * new_h, np.sort(bbox[:, 1::2], axis=1) * new_w
  rows = np.concatenate([np.asarray(objects["label"], np.float64)[:n, None],
                         xs[:, :1], ys[:, :1], xs[:, 1:], ys[:, 1:]], axis=1)
  keep &= (rows[:, 3] > rows[:, 1]) & (rows[:, 4] > rows[:, 2])
  return image.astype(np.float32), pad_objects(rows[keep], max_objects)


def _coco_reader(size: int, max_objects: int
                 ) -> Callable[[Sequence[Any], Any], tuple[np.ndarray, np.ndarray]]:
  """The split reader of `read_splits`: every record through `decode_coco`."""
  def read(source: Sequence[Any], info: Any) -> tuple[np.ndarray, np.ndarray]:
    del info
    pairs = [decode_coco(r, size, max_objects) for r in iter_records(source)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
  return read


# In CATALOG_LOADERS: the sweep checks it before it writes anything (one line without
# TensorFlow or without the prepared data: loader.check_obtainable).
CATALOG_LOADERS["coco"] = "coco/2017"


@DATASETS.register("coco")
def load_coco(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """coco/2017 letterboxed to ``data.image_size`` (module docstring); validation as the
  test split; `seed` unused (fixed splits)."""
  del seed
  size = int(data_cfg.image_size) if data_cfg is not None else 224
  m = int(data_cfg.max_objects) if data_cfg is not None else DETECTION_DATA_KEYS["max_objects"]
  splits, _ = read_splits(COCO_TFDS, data_dir, "coco", _coco_reader(size, m),
                          splits=("train", "validation"))
  return make_dataset("coco", *splits["train"], *splits["validation"], COCO_CLASSES,
                      task=DETECTION)
