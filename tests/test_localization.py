"""The localization task: the shapes builder, IoU, the box losses and their chance level."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from gradlab.data.shapes import IMAGE_SIZE, _masks, render_shapes
from gradlab.losses import (
  HUBER_DELTA,
  LOSSES,
  iou,
  localization_chance,
  localization_loss,
)
from gradlab.registry import ConfigError


def test_rendered_boxes_are_the_tight_boxes_of_the_shapes_pixels():
  n = 300
  images, cls, boxes = render_shapes(n, seed=5)
  assert images.shape == (n, IMAGE_SIZE, IMAGE_SIZE, 1) and set(cls) == {0, 1, 2, 3}
  # the same draw without noise: the shape's pixels
  rng = np.random.default_rng(5)
  c = rng.integers(4, size=n)
  w, h = rng.integers(6, 17, size=n), rng.integers(6, 17, size=n)
  left, top = rng.integers(0, IMAGE_SIZE - w + 1), rng.integers(0, IMAGE_SIZE - h + 1)
  centre = np.arange(IMAGE_SIZE) + 0.5
  u = np.broadcast_to((centre[None, None, :] - left[:, None, None]) / w[:, None, None],
                      (n, IMAGE_SIZE, IMAGE_SIZE))
  v = np.broadcast_to((centre[None, :, None] - top[:, None, None]) / h[:, None, None],
                      (n, IMAGE_SIZE, IMAGE_SIZE))
  mask = _masks(c, u, v)
  assert np.array_equal(c, cls)
  rows, cols = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
  for i in range(n):
    x0, y0, x1, y1 = boxes[i]
    assert 0 <= x0 < x1 <= IMAGE_SIZE and 0 <= y0 < y1 <= IMAGE_SIZE
    inside = (cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)
    assert mask[i].sum() > 0 and not np.any(mask[i] & ~inside)   # contains every pixel
    # tight: each edge row / column of the box holds a shape pixel
    assert mask[i][int(y0)].any() and mask[i][int(y1) - 1].any()
    assert mask[i][:, int(x0)].any() and mask[i][:, int(x1) - 1].any()


def test_shapes_dataset_through_tfds(tfds_dir):
  from gradlab.data import load_dataset

  ds = load_dataset("shapes", data_dir=tfds_dir)
  assert ds.task.loss == "localization" and ds.num_classes == 4
  assert ds.x_train.shape == (4000, 32, 32, 1) and ds.y_train.shape == (4000, 5)
  assert ds.y_train.dtype == np.float32 and ds.y_test.shape == (1000, 5)
  box = ds.y_train[:, 1:]
  assert np.all(box[:, :2] >= 0) and np.all(box[:, 2:] <= 32) and np.all(box[:, 2:] > box[:, :2])
  _, cls, boxes = render_shapes(4000, seed=0)   # the stored records are the draw (TFDS
  drawn = np.concatenate([cls[:, None], boxes], 1)  # stores them in its own key order)
  rows = lambda a: a[np.lexsort(a.T[::-1])]
  np.testing.assert_array_equal(rows(ds.y_train), rows(drawn.astype(np.float32)))


def test_iou_hand_cases():
  a = jnp.array([[0.0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 1, 1], [0, 0, 2, 2], [3, 3, 1, 1]])
  b = jnp.array([[1.0, 1, 3, 3], [1, 1, 3, 3], [2, 2, 3, 3], [0, 0, 2, 2], [3, 3, 1, 1]])
  np.testing.assert_allclose(iou(a, b), [1 / 7, 4 / 16, 0.0, 1.0, 0.0], rtol=1e-6)
  boxes = jnp.asarray(render_shapes(50, seed=2)[2])
  np.testing.assert_allclose(iou(boxes, boxes), 1.0, rtol=1e-6)   # a box with itself
  np.testing.assert_allclose(iou(a, b), iou(b, a), rtol=1e-6)     # symmetric


def _labels(n=64, seed=0):
  _, cls, boxes = render_shapes(n, seed)
  return np.concatenate([cls[:, None], boxes], axis=1).astype(np.float32)


def test_huber_gradient_is_bounded_and_l2_grows_with_the_error():
  labels = jnp.asarray(_labels(4))
  logits = jnp.zeros((4, 4))
  for err in (0.5, 10.0, 1000.0):
    box = labels[:, 1:] + err
    for name, expected in (("huber", min(err, HUBER_DELTA)), ("l2", err)):
      fn = localization_loss(name)
      g = jax.grad(lambda b, fn=fn: fn({"logits": logits, "box": b}, labels))(box)
      np.testing.assert_allclose(g, expected / 4, rtol=1e-5)    # mean over 4 examples


def test_chance_is_the_constant_predictors_loss():
  labels = _labels(200)
  freq = np.bincount(labels[:, 0].astype(int), minlength=4) / len(labels)
  outputs = {"logits": jnp.log(jnp.tile(jnp.asarray(freq, jnp.float32), (200, 1))),
             "box": jnp.tile(jnp.asarray(labels[:, 1:].mean(0)), (200, 1))}
  for name in ("l2", "huber"):
    loss = float(localization_loss(name)(outputs, jnp.asarray(labels)))
    np.testing.assert_allclose(localization_chance(labels, 4, name), loss, rtol=1e-5)
  # pixel-unit boxes: the L2 constant is an order of magnitude above the class entropy
  assert localization_chance(labels, 4, "l2") > 10 * np.log(4)


def test_bind_selects_the_box_loss_and_refuses_unknown_names():
  spec = LOSSES.get("localization")
  labels = jnp.asarray(_labels(8))
  outputs = {"logits": jnp.zeros((8, 4)), "box": labels[:, 1:] + 5.0}
  l2 = spec.bind(mlc.ConfigDict({"box_loss": "l2"}))(outputs, labels)
  huber = spec.bind(mlc.ConfigDict({"box_loss": "huber"}))(outputs, labels)
  np.testing.assert_allclose(l2 - np.log(4), 4 * 0.5 * 25, rtol=1e-5)
  np.testing.assert_allclose(huber - np.log(4), 4 * (5 - 0.5), rtol=1e-5)
  metrics = spec.metrics({"logits": jnp.eye(4)[labels[:, 0].astype(int)], "box": labels[:, 1:]},
                         labels)
  np.testing.assert_allclose([metrics["accuracy"], metrics["mean_iou"]], [1.0, 1.0])
  with pytest.raises(ConfigError, match="known: giou, huber, l2"):
    spec.bind(mlc.ConfigDict({"box_loss": "l1"}))
