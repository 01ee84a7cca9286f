"""Training losses by name, each with the loss of the best constant predictor.

A `Loss` holds
- ``fn(outputs, labels) -> scalar``: the training objective;
- ``chance(labels, num_classes) -> float``: the loss of the best constant prediction,
  what `gradlab.regimes` judges ``stalled`` against (a run that does not beat it by the
  stall fraction stalled); a dataset's `Task.chance` overrides it;
- ``metrics(outputs, labels) -> {name: scalar}``: evaluation metrics, written as
  ``test_<name>`` columns (``accuracy`` is ``test_accuracy``);
- ``bind(train_cfg) -> fn``: when given, builds ``fn`` from static options of the
  config's ``train`` section (e.g. ``train.box_loss``), and ``bind_chance(train_cfg)``
  the matching ``chance``.

`z_loss` is PaLM's auxiliary term on the softmax normalizer, added to the objective
with the traced weight ``train.z_loss``. Integer labels may carry -1 at positions the
loss ignores (sequence tasks).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradlab.config import register_keys
from gradlab.registry import Registry

# The train section's loss keys (the training loop's own: gradlab.defaults).
LOSS_KEYS: dict[str, Any] = register_keys("train", dict(
  loss="auto",       # auto: the dataset task's loss; or a `LOSSES` name
  z_loss=0.0,        # weight of z-loss (PaLM): z * mean(logsumexp(logits)^2); traced
  box_loss="huber",  # localization, detection: a `BOX_LOSSES` name (static)
), family="losses", traced=("z_loss",), switches=("z_loss",), non_negative=("z_loss",))

Metrics = Callable[[Any, jax.Array], Mapping[str, jax.Array]]


class Loss(NamedTuple):
  fn: Callable[[Any, jax.Array], jax.Array]     # (outputs, labels) -> scalar
  chance: Callable[[np.ndarray, int], float]     # (train labels, K) -> constant's loss
  metrics: Metrics | None = None                 # (outputs, labels) -> {name: scalar}
  bind: Callable[[Any], Callable[[Any, jax.Array], jax.Array]] | None = None
  bind_chance: Callable[[Any], Callable[[np.ndarray, int], float]] | None = None


LOSSES: Registry[Loss] = Registry("loss")


def _class_frequencies(labels: np.ndarray, num_classes: int) -> np.ndarray:
  labels = np.asarray(labels).ravel()
  labels = labels[labels >= 0]
  return np.bincount(labels, minlength=num_classes) / max(labels.size, 1)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels (any leading shape), over the
  positions whose label is >= 0."""
  mask = labels >= 0
  per = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(mask, labels, 0))
  return _masked_mean(per, mask)


def cross_entropy_chance(labels: np.ndarray, num_classes: int) -> float:
  """The entropy of the label marginal (log K for K balanced classes)."""
  p = _class_frequencies(labels, num_classes)
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def accuracy(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  """Fraction of counted positions (label >= 0) whose argmax is the label."""
  mask = labels >= 0
  return {"accuracy": _masked_mean(jnp.argmax(logits, -1) == labels, mask)}


def logits_of(outputs: Any) -> jax.Array:
  """The classification logits among a model's outputs (the array, or its 'logits')."""
  return outputs["logits"] if isinstance(outputs, Mapping) else outputs


def z_loss(outputs: Any, labels: jax.Array | None = None) -> jax.Array:
  """The z-loss of PaLM (Chowdhery et al. 2022, "PaLM", Sec. 5: "z_loss = 1e-4 *
  log^2 Z"): the mean over positions of log(Z)^2, Z = sum_k exp(logit_k), which pulls
  the softmax normalizer towards 1. Positions whose integer label is -1 (ignored by the
  cross-entropy) are left out. `train.z_loss` is its (traced) weight; final_loss and
  test_loss include the term, as the training objective does."""
  logits = logits_of(outputs)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  if (labels is not None and jnp.issubdtype(labels.dtype, jnp.integer)
      and labels.shape == log_z.shape):
    mask = (labels >= 0).astype(log_z.dtype)
    return jnp.sum(log_z ** 2 * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return jnp.mean(log_z ** 2)


def mse(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """0.5 * mean over examples of ||logits - onehot(label)||^2: with a linear model and
  full batches, a quadratic in the parameters (gradient descent on it diverges exactly
  above lr = 2 / lambda_max of its Hessian)."""
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return 0.5 * jnp.mean(jnp.sum((logits - onehot) ** 2, axis=-1))


def mse_chance(labels: np.ndarray, num_classes: int) -> float:
  """The best constant prediction is the class frequency vector p:
  0.5 * sum_k p_k (1 - p_k)."""
  p = _class_frequencies(labels, num_classes)
  return float(0.5 * np.sum(p * (1 - p)))


def _as_targets(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  return targets.reshape(outputs.shape).astype(outputs.dtype)


def squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """Regression: 0.5 * mean over examples of ||outputs - targets||^2 (float targets of
  shape (B,) or (B, k), matching outputs (B, k))."""
  err = outputs - _as_targets(outputs, targets)
  return 0.5 * jnp.mean(jnp.sum(err.reshape(err.shape[0], -1) ** 2, axis=-1))


def squared_error_chance(targets: np.ndarray, num_outputs: int) -> float:
  """The best constant is the target mean: 0.5 * the sum over outputs of the variance."""
  t = np.asarray(targets, np.float64).reshape(len(targets), -1)
  return float(0.5 * t.var(axis=0).sum())


LOSSES.register("cross_entropy")(Loss(cross_entropy, cross_entropy_chance, accuracy))
LOSSES.register("mse")(Loss(mse, mse_chance, accuracy))
LOSSES.register("squared_error")(Loss(squared_error, squared_error_chance))


def resolve(name: str, task_loss: str) -> str:
  """`train.loss`, with 'auto' meaning the dataset task's own loss."""
  return task_loss if name == "auto" else name


def bound_loss(train_cfg: Any, task_loss: str
               ) -> tuple[Loss, Callable[[Any, jax.Array], jax.Array]]:
  """The `Loss` that ``train_cfg.loss`` names ('auto': the task's) and its objective,
  bound to the section's static options where the loss takes any."""
  loss = LOSSES.get(resolve(train_cfg.loss, task_loss))
  return loss, (loss.bind(train_cfg) if loss.bind else loss.fn)


def chance_loss(train_cfg: Any, dataset: Any) -> float:
  """The chance-level loss `stalled` is judged against: the dataset task's stated one,
  else the loss's best constant predictor on the train labels. `train_cfg` is the
  config's ``train`` section (``loss``: 'auto' resolves to the task's loss; a bound
  loss's options, e.g. ``box_loss``)."""
  if dataset.task.chance is not None:
    return float(dataset.task.chance)
  loss, _ = bound_loss(train_cfg, dataset.task.loss)
  chance = loss.bind_chance(train_cfg) if loss.bind_chance else loss.chance
  return chance(dataset.y_train, dataset.num_classes)


# --- localization: class + box (the object-detection case at lab scale) -------------------

HUBER_DELTA = 1.0
# (predicted boxes (..., 4), target boxes (..., 4)) -> the box loss of each box (...);
# boxes are (x0, y0, x1, y1). The per-coordinate losses sum over the 4 coordinates.
BoxLoss = Callable[[jax.Array, jax.Array], jax.Array]
BOX_LOSSES: Registry[BoxLoss] = Registry("box loss")


@BOX_LOSSES.register("l2")
def l2_box_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """0.5 * ||pred - target||^2 over the 4 coordinates: its gradient is the error itself."""
  return jnp.sum(0.5 * (pred - target) ** 2, axis=-1)


@BOX_LOSSES.register("huber", "smooth_l1")
def huber_box_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Smooth L1 (Girshick 2015, "Fast R-CNN", Sec. 2.3, eq. 3) summed over the 4
  coordinates: 0.5 r^2 for |r| < 1, else |r| - 0.5; adopted because "when the regression
  targets are unbounded, training with L2 loss can require careful tuning of learning
  rates in order to prevent exploding gradients". Its derivative is bounded by
  HUBER_DELTA; the L2 one is r itself."""
  return jnp.sum(optax.huber_loss(pred - target, delta=HUBER_DELTA), axis=-1)


@BOX_LOSSES.register("giou")
def giou_box_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """1 - GIoU(pred, target) (Rezatofighi et al. 2019, "Generalized Intersection over
  Union", Alg. 2): in [0, 2], 0 for identical boxes, above 1 for disjoint ones; invariant
  to the boxes' scale, so its gradient with respect to a coordinate is O(1 / box size)
  whatever the units."""
  return 1.0 - giou(pred, target)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den where den > 0, else 0 (with a gradient that is finite everywhere)."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def giou(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Generalized IoU (Rezatofighi et al. 2019, Alg. 1): IoU - |C minus (A union B)| / |C|,
  C the smallest box enclosing both; in [-1, 1]. As in their Alg. 2 the predicted box's
  corners are ordered first (x0 <= x1, y0 <= y1), so an unconstrained regressor's output
  is a valid box; the target is taken as given."""
  p0 = jnp.minimum(pred[..., :2], pred[..., 2:])
  p1 = jnp.maximum(pred[..., :2], pred[..., 2:])
  t0, t1 = target[..., :2], target[..., 2:]
  wh_inter = jnp.clip(jnp.minimum(p1, t1) - jnp.maximum(p0, t0), 0.0)
  inter = wh_inter[..., 0] * wh_inter[..., 1]
  area_p = jnp.prod(p1 - p0, axis=-1)
  area_t = jnp.prod(jnp.clip(t1 - t0, 0.0), axis=-1)
  union = area_p + area_t - inter
  hull = jnp.prod(jnp.maximum(p1, t1) - jnp.minimum(p0, t0), axis=-1)
  return _safe_div(inter, union) - _safe_div(hull - union, hull)


def iou(box_a: jax.Array, box_b: jax.Array) -> jax.Array:
  """Intersection over union of boxes (..., 4) = (x0, y0, x1, y1); 0 where the union is
  empty. A box with x1 < x0 (or y1 < y0) has area 0, so a malformed prediction scores 0."""
  ix = jnp.clip(jnp.minimum(box_a[..., 2], box_b[..., 2])
                - jnp.maximum(box_a[..., 0], box_b[..., 0]), 0.0)
  iy = jnp.clip(jnp.minimum(box_a[..., 3], box_b[..., 3])
                - jnp.maximum(box_a[..., 1], box_b[..., 1]), 0.0)
  inter = ix * iy

  def area(b: jax.Array) -> jax.Array:
    return jnp.clip(b[..., 2] - b[..., 0], 0.0) * jnp.clip(b[..., 3] - b[..., 1], 0.0)

  union = area(box_a) + area(box_b) - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def localization_loss(box_loss: str = "huber") -> Callable[[Any, jax.Array], jax.Array]:
  """outputs {'logits': (B, K), 'box': (B, 4)}, labels (B, 5) = [class, x0, y0, x1, y1]
  -> cross-entropy + the mean over examples of the box loss summed over the 4
  coordinates (Fast R-CNN's multi-task loss, eq. 1, with lambda = 1), or of 1 - GIoU
  (`BOX_LOSSES`)."""
  per_box = BOX_LOSSES.get(box_loss)

  def fn(outputs: Any, labels: jax.Array) -> jax.Array:
    classes = labels[:, 0].astype(jnp.int32)
    box = outputs["box"]
    box_term = per_box(box, labels[:, 1:5].astype(box.dtype))
    return cross_entropy(outputs["logits"], classes) + jnp.mean(box_term)

  return fn


def localization_chance(labels: np.ndarray, num_classes: int, box_loss: str = "huber") -> float:
  """The constant predictor's loss: the class entropy plus the box loss of always
  predicting the mean training box."""
  labels = np.asarray(labels, np.float64)
  boxes = labels[:, 1:5]
  mean_box = np.broadcast_to(boxes.mean(axis=0), boxes.shape)
  box_term = float(jnp.mean(BOX_LOSSES.get(box_loss)(jnp.asarray(mean_box, jnp.float32),
                                                     jnp.asarray(boxes, jnp.float32))))
  return cross_entropy_chance(labels[:, 0].astype(np.int64), num_classes) + box_term


def localization_metrics(outputs: Any, labels: jax.Array) -> dict[str, jax.Array]:
  """accuracy of the class head and mean IoU of the predicted vs true box."""
  return {**accuracy(outputs["logits"], labels[:, 0].astype(jnp.int32)),
          "mean_iou": jnp.mean(iou(outputs["box"], labels[:, 1:5]))}


LOSSES.register("localization")(Loss(
  localization_loss("huber"), localization_chance, localization_metrics,
  bind=lambda train_cfg: localization_loss(train_cfg.box_loss),
  bind_chance=lambda train_cfg: functools.partial(localization_chance,
                                                  box_loss=train_cfg.box_loss)))
