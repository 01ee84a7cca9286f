"""'detection': FCOS's dense one-stage detection loss, its chance level, and mAP@0.5.

The model ('detector', `gradlab.models.detector`) predicts at every location p = (x, y)
of one feature map (pixel coordinates of the cell centres, its ``'points'`` output):
class logits (K sigmoids), the distances (l, t, r, b) from p to the four sides of a box
(``'ltrb'``, pixels) and a centerness logit. Labels per image are float (M, 5) rows
[class, x0, y0, x1, y1] in pixels, padded with class -1 (`gradlab.data.detection_data`).

Target assignment (Tian et al. 2019, "FCOS", Sec. 3.1), on device and vmappable
(`assign`): a location is positive for a box when it lies strictly inside it
(min(l*, t*, r*, b*) > 0); a location inside several boxes takes the one of smallest
area; padding rows never match. No centre sampling, and no per-level size ranges (one
feature level).

The objective (`detection_loss`), summed over locations and divided by the number of
positive locations in the minibatch (at least 1):
- the focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 5:
  -alpha_t (1 - p_t)^gamma log p_t, alpha = 0.25, gamma = 2) over every location and
  class, the target of a positive location one-hot in its box's class;
- the box loss (``train.box_loss``: l2, huber / smooth_l1 or giou, `gradlab.losses.
  BOX_LOSSES`) between the decoded box (x - l, y - t, x + r, y + b) and the assigned
  box, on positive locations;
- the binary cross-entropy of the centerness logit against FCOS's centerness target
  sqrt(min(l*, r*) / max(l*, r*) * min(t*, b*) / max(t*, b*)) (eq. 3), on positives.

Metrics over the whole test split (`detection_metrics`, fixed shapes): ``map50``, the
mean over classes present in the split of the average precision at IoU 0.5, and
``mean_iou``, the mean IoU of the detections matched at that threshold (see
`mean_average_precision`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradlab.losses import BOX_LOSSES, LOSSES, Loss, iou

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0   # Lin et al. 2017, Sec. 5.1 / Table 1a-b
NMS_IOU = 0.6                          # FCOS's test-time NMS threshold
MATCH_IOU = 0.5                        # PASCAL VOC's (Everingham et al. 2010): AP50
MAX_DETECTIONS = 100                   # per image, as COCO's maxDets
CHANCE_IMAGES = 512                    # chance: the first label sets it reads
CHANCE_STRIDE = 8                      # chance: the grid it is computed on


class Targets(NamedTuple):
  """The targets of every location of one image (`assign`)."""

  cls: jax.Array   # (P,) int32: the assigned box's class; -1 for a negative location
  box: jax.Array   # (P, 4): the assigned box (x0, y0, x1, y1); a unit box if negative


def assign(points: jax.Array, labels: jax.Array) -> Targets:
  """FCOS's assignment for one image: points (P, 2) = (x, y), labels (M, 5) = [class,
  x0, y0, x1, y1] (class -1: padding). Positive where the point is strictly inside a
  real box; ties go to the box of smallest area."""
  cls, box = labels[:, 0], labels[:, 1:5].astype(points.dtype)
  x, y = points[:, 0:1], points[:, 1:2]
  ltrb = jnp.stack([x - box[:, 0], y - box[:, 1], box[:, 2] - x, box[:, 3] - y], -1)
  inside = (jnp.min(ltrb, axis=-1) > 0) & (cls >= 0)[None, :]          # (P, M)
  area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
  which = jnp.argmin(jnp.where(inside, area[None, :], jnp.inf), axis=1)
  positive = jnp.any(inside, axis=1)
  unit = jnp.array([0.0, 0.0, 1.0, 1.0], points.dtype)
  return Targets(jnp.where(positive, cls[which].astype(jnp.int32), -1),
                 jnp.where(positive[:, None], box[which], unit))


def decode(points: jax.Array, ltrb: jax.Array) -> jax.Array:
  """Boxes (x - l, y - t, x + r, y + b) from points (..., 2) and distances (..., 4)."""
  return jnp.concatenate([points - ltrb[..., :2], points + ltrb[..., 2:]], axis=-1)


def centerness_target(points: jax.Array, box: jax.Array) -> jax.Array:
  """FCOS eq. 3: sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of the distances
  from each point to its box's sides; 0 where the point is not inside the box."""
  left, top = points[..., 0] - box[..., 0], points[..., 1] - box[..., 1]
  right, bottom = box[..., 2] - points[..., 0], box[..., 3] - points[..., 1]
  return jnp.sqrt(_min_over_max(left, right) * _min_over_max(top, bottom))


def _min_over_max(a: jax.Array, c: jax.Array) -> jax.Array:
  """min(a, c) / max(a, c), clipped to [0, 1] (0 where either is <= 0)."""
  return jnp.clip(jnp.minimum(a, c), 0.0) / jnp.maximum(jnp.maximum(a, c), 1e-12)


def focal_loss(logits: jax.Array, targets: jax.Array, alpha: float = FOCAL_ALPHA,
               gamma: float = FOCAL_GAMMA) -> jax.Array:
  """Elementwise sigmoid focal loss (Lin et al. 2017, eq. 5): -alpha_t (1 - p_t)^gamma
  log p_t, p = sigmoid(logit), p_t = p where the target is 1 and 1 - p where it is 0,
  alpha_t likewise alpha or 1 - alpha. gamma = 0 and alpha = 0.5 give half the binary
  cross-entropy."""
  p = jax.nn.sigmoid(logits)
  p_t = p * targets + (1 - p) * (1 - targets)
  alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
  ce = optax.sigmoid_binary_cross_entropy(logits, targets)
  return alpha_t * (1 - p_t) ** gamma * ce


def _flat(outputs: dict[str, jax.Array], batch: int) -> tuple[jax.Array, ...]:
  """(points (P, 2), logits (B, P, K), ltrb (B, P, 4), centerness (B, P))."""
  logits = outputs["logits"]
  return (outputs["points"][0].reshape(-1, 2), logits.reshape(batch, -1, logits.shape[-1]),
          outputs["ltrb"].reshape(batch, -1, 4), outputs["centerness"].reshape(batch, -1))


def detection_loss(box_loss: str = "huber") -> Callable[[Any, jax.Array], jax.Array]:
  """outputs {'logits': (B, H, W, K), 'ltrb': (B, H, W, 4), 'centerness': (B, H, W),
  'points': (B, H, W, 2)}, labels (B, M, 5) -> focal + box + centerness terms, each
  summed over locations and divided by max(1, positive locations) (module docstring)."""
  per_box = BOX_LOSSES.get(box_loss)

  def fn(outputs: Any, labels: jax.Array) -> jax.Array:
    points, logits, ltrb, ctr = _flat(outputs, labels.shape[0])
    targets = jax.vmap(assign, (None, 0))(points, labels)
    positive = targets.cls >= 0
    num_pos = jnp.maximum(jnp.sum(positive), 1).astype(logits.dtype)
    onehot = jax.nn.one_hot(targets.cls, logits.shape[-1], dtype=logits.dtype)  # -1: zeros
    cls_term = jnp.sum(focal_loss(logits, onehot))
    box_term = jnp.sum(jnp.where(positive, per_box(decode(points, ltrb), targets.box), 0.0))
    ctr_target = jnp.where(positive, centerness_target(points, targets.box), 0.0)
    ctr_bce = optax.sigmoid_binary_cross_entropy(ctr, ctr_target)
    ctr_term = jnp.sum(jnp.where(positive, ctr_bce, 0.0))
    return (cls_term + box_term + ctr_term) / num_pos

  return fn


# --- chance: the best constant predictor ----------------------------------------------

def _focal_constant(pos: float, neg: float) -> float:
  """min over a constant probability p of pos * FL(p | 1) + neg * FL(p | 0), on a grid
  of 5001 logits in [-15, 10]."""
  z = np.linspace(-15.0, 10.0, 5001)
  log_p, log_q = -np.logaddexp(0, -z), -np.logaddexp(0, z)   # log p, log (1 - p)
  p = np.exp(log_p)
  return float(np.min(pos * FOCAL_ALPHA * (1 - p) ** FOCAL_GAMMA * -log_p
                      + neg * (1 - FOCAL_ALPHA) * p ** FOCAL_GAMMA * -log_q))


def grid_points(width: float, height: float, stride: int) -> jax.Array:
  """(P, 2) centres ((j + 1/2) s, (i + 1/2) s) of the ceil(W / s) x ceil(H / s) cells of
  a stride-s feature map ('SAME' convolutions), row by row."""
  xs = (np.arange(int(np.ceil(width / stride))) + 0.5) * stride
  ys = (np.arange(int(np.ceil(height / stride))) + 0.5) * stride
  return jnp.asarray(np.stack(np.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2),
                     jnp.float32)


def constant_loss(labels: np.ndarray, num_classes: int, points: jax.Array,
                  box_loss: str) -> float:
  """The loss of the best constant predictor on the locations `points` (P, 2): per class
  the focal-loss-optimal constant probability, the box-loss-optimal constant distances
  (l, t, r, b) (L-BFGS from their mean, the L2 optimum) and the mean centerness
  target; each term divided by the number of positives, as `detection_loss` does."""
  targets = jax.vmap(assign, (None, 0))(points, jnp.asarray(labels, jnp.float32))
  positive = np.asarray(targets.cls >= 0)
  n_pos = max(int(positive.sum()), 1)
  pts = np.broadcast_to(np.asarray(points), (*positive.shape, 2))[positive]
  box, cls = np.asarray(targets.box)[positive], np.asarray(targets.cls)[positive]
  n_k = np.bincount(cls, minlength=num_classes)
  focal = sum(_focal_constant(n, positive.size - n) for n in n_k) / n_pos
  if not len(box):
    return focal
  per_box = BOX_LOSSES.get(box_loss)
  value_and_grad = jax.jit(jax.value_and_grad(
    lambda ltrb: jnp.mean(per_box(decode(jnp.asarray(pts), ltrb), jnp.asarray(box)))))

  def box_term(ltrb: np.ndarray) -> tuple[float, np.ndarray]:
    value, grad = value_and_grad(jnp.asarray(ltrb, jnp.float32))
    return float(value), np.asarray(grad, np.float64)

  import scipy.optimize  # here, not at import: 0.4 s of every command's start-up

  mean = np.concatenate([pts - box[:, :2], box[:, 2:] - pts], 1).mean(0)
  found = scipy.optimize.minimize(box_term, mean, jac=True, method="L-BFGS-B")
  best = min(box_term(mean)[0], box_term(found.x)[0])
  ctr = np.asarray(centerness_target(jnp.asarray(pts), jnp.asarray(box)), np.float64)
  c = float(np.clip(ctr.mean(), 1e-6, 1 - 1e-6))
  return focal + best + float(np.mean(-(ctr * np.log(c) + (1 - ctr) * np.log(1 - c))))


def detection_chance(labels: np.ndarray, num_classes: int, box_loss: str = "huber") -> float:
  """The loss of the best constant predictor (the same logits, distances and centerness
  at every location: `constant_loss`) on the first `CHANCE_IMAGES` label sets, on the
  stride-`CHANCE_STRIDE` grid over the frame [0, max x1] x [0, max y1] of the labels.
  The loss cannot see the model's grid; on multishapes the best constant on stride 4 is
  within 2% of the stride-8 one (0.2% on the first 512 train images) and the stride-16
  one above it, so detectors of stride 4 to 16 that learned only constants are judged
  ``stalled`` (tests/test_detection.py)."""
  labels = np.asarray(labels, np.float32)[:CHANCE_IMAGES]
  rows = labels.reshape(-1, 5)
  rows = rows[rows[:, 0] >= 0]
  if not len(rows):   # no object: nothing to judge against but the initial loss
    return float("inf")
  points = grid_points(float(rows[:, 3].max()), float(rows[:, 4].max()), CHANCE_STRIDE)
  return constant_loss(labels, num_classes, points, box_loss)


# --- mAP@0.5 with fixed shapes ----------------------------------------------------------

class Detections(NamedTuple):
  """The top detections of each image, in descending score order."""

  score: jax.Array  # (N, D) sigmoid(class logit) * sigmoid(centerness logit)
  cls: jax.Array    # (N, D) int32
  box: jax.Array    # (N, D, 4)


def top_detections(outputs: dict[str, jax.Array], max_detections: int = MAX_DETECTIONS
                   ) -> Detections:
  """Every (location, class) pair is a candidate with FCOS's test-time score,
  sigmoid(class) * sigmoid(centerness); the `max_detections` best per image."""
  n = outputs["logits"].shape[0]
  points, logits, ltrb, ctr = _flat(outputs, n)
  k = logits.shape[-1]
  score = (jax.nn.sigmoid(logits) * jax.nn.sigmoid(ctr)[..., None]).reshape(n, -1)
  top, index = jax.lax.top_k(score, min(max_detections, score.shape[1]))
  boxes = decode(points, ltrb)                                  # (N, P, 4)
  box = jnp.take_along_axis(boxes, (index // k)[..., None], axis=1)
  return Detections(top, (index % k).astype(jnp.int32), box)


def nms(cls: jax.Array, box: jax.Array, threshold: float = NMS_IOU) -> jax.Array:
  """Greedy class-wise non-maximum suppression of one image's detections, given in
  descending score order: (D,) bool, kept unless a kept detection of the same class
  before it overlaps it with IoU > threshold."""
  overlap = (iou(box[:, None], box[None]) > threshold) & (cls[:, None] == cls[None])
  d = cls.shape[0]

  def body(i: jax.Array, keep: jax.Array) -> jax.Array:
    return keep.at[i].set(~jnp.any(keep & overlap[i] & (jnp.arange(d) < i)))

  return jax.lax.fori_loop(0, d, body, jnp.ones(d, bool))


def match(cls: jax.Array, box: jax.Array, kept: jax.Array, labels: jax.Array,
          threshold: float = MATCH_IOU) -> tuple[jax.Array, jax.Array]:
  """COCO's greedy matching of one image: detections in score order each take the
  unmatched ground-truth box of their class with the highest IoU >= threshold. Returns
  (true positive (D,) bool, its IoU (D,), 0 where not a true positive)."""
  gt_cls, gt_box = labels[:, 0], labels[:, 1:5]
  overlaps = iou(box[:, None], gt_box[None])                          # (D, M)
  ok = (cls[:, None] == gt_cls[None]) & (gt_cls >= 0)[None] & (overlaps >= threshold)
  ok = ok & kept[:, None]

  def body(i: jax.Array, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    taken, tp, tp_iou = state
    free = ok[i] & ~taken
    j = jnp.argmax(jnp.where(free, overlaps[i], -1.0))
    hit = jnp.any(free)
    return (taken.at[j].set(taken[j] | hit), tp.at[i].set(hit),
            tp_iou.at[i].set(jnp.where(hit, overlaps[i, j], 0.0)))

  d = cls.shape[0]
  init = (jnp.zeros(gt_cls.shape, bool), jnp.zeros(d, bool), jnp.zeros(d, box.dtype))
  _, tp, tp_iou = jax.lax.fori_loop(0, d, body, init)
  return tp, tp_iou


def average_precision(score: jax.Array, is_class: jax.Array, tp: jax.Array,
                      n_gt: jax.Array) -> jax.Array:
  """All-point interpolated AP (PASCAL VOC 2010 onwards, Everingham et al. 2010,
  Sec. 4.2) of one class over a split: detections (T,) with their score, whether they
  are of this class, and whether they are true positives; n_gt ground-truth boxes.
  Sorted by score, precision at each rank is TP / rank, made monotone from the right
  (p_interp(r) = max over r' >= r of p(r')), and AP = sum over true positives of the
  interpolated precision / n_gt."""
  s = jnp.where(is_class & jnp.isfinite(score), score, -jnp.inf)
  order = jnp.argsort(-s)
  valid = jnp.isfinite(s[order])
  hit = tp[order] & valid
  ctp, cfp = jnp.cumsum(hit), jnp.cumsum(valid & ~hit)
  precision = jnp.where(valid, ctp / jnp.maximum(ctp + cfp, 1), 0.0)
  envelope = jax.lax.cummax(precision, reverse=True)
  return jnp.sum(jnp.where(hit, envelope, 0.0)) / jnp.maximum(n_gt, 1)


def mean_average_precision(det: Detections, labels: jax.Array, num_classes: int
                           ) -> dict[str, jax.Array]:
  """map50: the mean over the classes with ground truth in `labels` (N, M, 5) of the
  AP at IoU 0.5 of `det` after class-wise NMS (NaN when there is no ground truth);
  mean_iou: the mean IoU of the true-positive detections (NaN when none)."""
  kept = jax.vmap(nms)(det.cls, det.box)
  tp, tp_iou = jax.vmap(match)(det.cls, det.box, kept, labels)
  score = jnp.where(kept, det.score, -jnp.inf).ravel()
  cls, tp = det.cls.ravel(), tp.ravel()
  gt = labels[..., 0].ravel()
  n_gt = jnp.bincount(jnp.where(gt >= 0, gt, num_classes).astype(jnp.int32),
                      length=num_classes + 1)[:num_classes]

  def ap_of(k: jax.Array) -> jax.Array:
    return average_precision(score, cls == k, tp, n_gt[k])

  ap = jax.lax.map(ap_of, jnp.arange(num_classes))
  present = n_gt > 0
  map50 = jnp.sum(jnp.where(present, ap, 0.0)) / jnp.sum(present)
  n_tp = jnp.sum(tp)
  return {"map50": jnp.where(jnp.any(present), map50, jnp.nan),
          "mean_iou": jnp.where(n_tp > 0, jnp.sum(tp_iou) / jnp.maximum(n_tp, 1), jnp.nan)}


def detection_metrics(outputs: Any, labels: jax.Array) -> dict[str, jax.Array]:
  """{'map50', 'mean_iou'} of the detector's outputs on a whole split (test_map50,
  test_mean_iou)."""
  return mean_average_precision(top_detections(outputs), labels, outputs["logits"].shape[-1])


LOSSES.register("detection")(Loss(
  detection_loss("huber"), detection_chance,
  detection_metrics,
  bind=lambda train_cfg: detection_loss(train_cfg.box_loss),
  bind_chance=lambda train_cfg: functools.partial(detection_chance,
                                                  box_loss=train_cfg.box_loss)))
