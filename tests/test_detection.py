"""Detection (issue 18 part 3): FCOS assignment, focal loss, GIoU, the detection loss and
its chance level, mAP@0.5 on hand-made detections, the detector, the datasets, the CLI."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import pytest
from conftest import run_cli

from gradlab import detection as det
from gradlab import results
from gradlab.data import DatasetUnavailableError, load_dataset, mock
from gradlab.data import detection_data as dd
from gradlab.data.loader import DATA_KEYS
from gradlab.defaults import base_config
from gradlab.losses import BOX_LOSSES, LOSSES, giou, localization_chance, localization_loss
from gradlab.models import build_model, scale_params
from gradlab.registry import ConfigError

LOG2 = math.log(2.0)
# 4 x 4 stride-8 grid on a 32 x 32 image; boxes A (class 0), B (1), C (2), padding.
POINTS = det.grid_points(32, 32, 8)
BOXES = np.array([[0, 0, 0, 16, 16], [1, 8, 8, 32, 32], [2, 20, 0, 32, 12],
                  [-1, 0, 0, 32, 32]], np.float32)
EXPECTED_CLS = np.array([[0, 0, -1, 2], [0, 0, 1, 1], [-1, 1, 1, 1], [-1, 1, 1, 1]])


def test_assignment_inside_smallest_box_and_padding_ignored():
  """(12, 12) lies in A and B: A is smaller; x = 20 is C's left edge: not inside (strict);
  the padding row covers every point and matches none; an all-padding image: no positive."""
  t = jax.vmap(det.assign, (None, 0))(POINTS, jnp.asarray(np.stack([BOXES, BOXES * 0 - 1])))
  np.testing.assert_array_equal(np.asarray(t.cls[0]).reshape(4, 4), EXPECTED_CLS)
  np.testing.assert_array_equal(t.box[0, 5], BOXES[0, 1:])       # point (12, 12) -> A
  assert np.all(np.asarray(t.cls[1]) == -1)


def test_focal_loss_hand_values_and_its_cross_entropy_limit():
  sig2 = 1 / (1 + math.exp(-2.0))
  got = det.focal_loss(jnp.array([0.0, 2.0]), jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(got, [0.25 * 0.25 * LOG2, 0.75 * sig2**2 * math.log1p(math.exp(2))],
                             rtol=1e-5)
  z = jax.random.normal(jax.random.PRNGKey(0), (50,)) * 3
  t = (jax.random.uniform(jax.random.PRNGKey(1), (50,)) < 0.3).astype(jnp.float32)
  np.testing.assert_allclose(det.focal_loss(z, t, alpha=0.5, gamma=0.0),
                             0.5 * optax.sigmoid_binary_cross_entropy(z, t), rtol=1e-5)


def test_giou_hand_cases():
  a = jnp.array([[0.0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 1, 1], [2, 2, 0, 0]])
  b = jnp.array([[1.0, 1, 3, 3], [0, 0, 2, 2], [2, 0, 3, 1], [0, 0, 2, 2]])
  loss = BOX_LOSSES.get("giou")(a, b)
  np.testing.assert_allclose(loss, [1 - (1 / 7 - 2 / 9), 0.0, 1 + 1 / 3, 0.0], atol=1e-6)
  np.testing.assert_allclose(giou(10 * a, 10 * b), giou(a, b), atol=1e-6)   # scale-free
  grad = jax.grad(lambda p: jnp.sum(BOX_LOSSES.get("giou")(p, jnp.zeros(4))))(jnp.zeros(4))
  assert np.all(np.isfinite(grad))                                         # degenerate boxes


def _outputs(ltrb_pos_offset: float, ltrb_neg: float = 1000.0) -> dict[str, jax.Array]:
  """Outputs on the 4 x 4 grid: logits and centerness 0, distances = the exact targets +
  offset at positive points, ltrb_neg elsewhere."""
  t = det.assign(POINTS, jnp.asarray(BOXES))
  exact = jnp.concatenate([POINTS - t.box[:, :2], t.box[:, 2:] - POINTS], 1)
  ltrb = jnp.where((t.cls >= 0)[:, None], exact + ltrb_pos_offset, ltrb_neg)
  return {"logits": jnp.zeros((1, 4, 4, 3)), "ltrb": ltrb.reshape(1, 4, 4, 4),
          "centerness": jnp.zeros((1, 4, 4)), "points": POINTS.reshape(1, 4, 4, 2)}


def test_detection_loss_terms_normalized_by_positives():
  """13 positive points; logits 0 give focal ln2/4 x (0.25 per positive pair, 0.75 per
  negative), centerness logit 0 gives BCE ln2; exact boxes add nothing, boxes 2 px too
  wide on each side add 0.5*4*2^2 (L2) or 4*1.5 (Huber) per positive, whatever the
  distances at negative points."""
  y = jnp.asarray(BOXES[None])
  base = LOG2 * 0.25 * (13 * 0.25 + 35 * 0.75) / 13 + LOG2
  for name in ("l2", "huber", "giou"):
    np.testing.assert_allclose(det.detection_loss(name)(_outputs(0.0), y), base, rtol=1e-5)
  off = _outputs(2.0)
  np.testing.assert_allclose(det.detection_loss("l2")(off, y), base + 8.0, rtol=1e-5)
  np.testing.assert_allclose(det.detection_loss("huber")(off, y), base + 6.0, rtol=1e-5)


def test_chance_is_the_best_constant_predictor():
  """On the stride-8 grid an optimized constant output does not beat the chance level
  by more than 0.5%; on stride 4 the best constant is within 2% of it (so a stride-4
  model that learned only constants is still stalled: above 0.95 x chance), on stride
  16 above it."""
  _, y = dd.render_multishapes(128, [3, 0], 16)
  chance = det.detection_chance(y, 4, "huber")
  assert det.constant_loss(y, 4, det.grid_points(64, 64, 16), "huber") > chance
  np.testing.assert_allclose(det.constant_loss(y, 4, det.grid_points(64, 64, 4), "huber"),
                             chance, rtol=2e-2)
  pts = det.grid_points(64, 64, 8).reshape(1, 8, 8, 2)
  fn = det.detection_loss("huber")

  def loss(theta):
    return fn({"logits": jnp.broadcast_to(theta["cls"], (128, 8, 8, 4)),
               "ltrb": jnp.broadcast_to(jax.nn.softplus(theta["box"]) * 8, (128, 8, 8, 4)),
               "centerness": jnp.broadcast_to(theta["ctr"], (128, 8, 8)),
               "points": jnp.broadcast_to(pts, (128, 8, 8, 2))}, jnp.asarray(y))

  theta = {"cls": jnp.full(4, -2.0), "box": jnp.zeros(4), "ctr": jnp.zeros(())}
  tx = optax.adam(0.05)

  def step(carry, _):
    theta, state = carry
    value, g = jax.value_and_grad(loss)(theta)
    u, state = tx.update(g, state)
    return (optax.apply_updates(theta, u), state), value

  _, values = jax.lax.scan(step, (theta, tx.init(theta)), None, length=400)
  assert float(values[-1]) > (1 - 5e-3) * chance
  assert float(values[-1]) < 1.02 * chance


_MAP = jax.jit(det.mean_average_precision, static_argnums=2)


def _map(dets, labels, k=1):
  """mean_average_precision of hand detections [(score, cls, box), ...] per image,
  padded to 2 images x 4 detections x 2 boxes (one compile per k)."""
  pad_det, pad_gt = (-np.inf, 0, (100.0, 100, 101, 101)), [-1, 0, 0, 0, 0]
  dets = [*dets, []][:2] if len(dets) == 1 else dets
  labels = [*labels, []][:2] if len(labels) == 1 else labels
  rows = [sorted(x, key=lambda r: -r[0]) + [pad_det] * (4 - len(x)) for x in dets]
  gt = [list(x) + [pad_gt] * (2 - len(x)) for x in labels]
  out = _MAP(det.Detections(
    jnp.asarray([[r[0] for r in x] for x in rows], jnp.float32),
    jnp.asarray([[r[1] for r in x] for x in rows], jnp.int32),
    jnp.asarray([[r[2] for r in x] for x in rows], jnp.float32)),
    jnp.asarray(gt, jnp.float32), k)
  return float(out["map50"]), float(out["mean_iou"])


G1, G2 = (0.0, 0, 10, 10), (20.0, 20, 30, 30)
GT = [[[0, *G1], [0, *G2]]]


def test_map50_perfect_and_a_known_precision_recall_curve():
  assert _map([[(0.9, 0, G1), (0.8, 0, G2)]], GT) == (1.0, 1.0)
  # TP (IoU 1), FP, TP (IoU 100/140): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
  ap, miou = _map([[(0.9, 0, G1), (0.8, 0, (50, 50, 60, 60)), (0.7, 0, (20, 20, 30, 34))]], GT)
  np.testing.assert_allclose([ap, miou], [0.5 + 0.5 * 2 / 3, (1 + 100 / 140) / 2], rtol=1e-5)
  # ranked over the split: image 2's false positive (0.9) comes first
  ap, _ = _map([[(0.6, 0, G1)], [(0.9, 0, (50, 50, 60, 60)), (0.5, 0, G1)]],
               [[[0, *G1]], [[0, *G1]]])
  np.testing.assert_allclose(ap, 2 / 3, rtol=1e-5)
  assert _map([[(0.9, 0, (0, 0, 10, 20.4))]], [[[0, *G1]]])[0] == 0.0      # IoU 0.49


def test_map50_nms_matching_and_classes_without_ground_truth():
  shifted = (1.0, 1, 11, 11)   # IoU 81/119 with G1: suppressed by NMS (0.6), same class
  assert _map([[(0.9, 0, G1), (0.8, 0, shifted), (0.7, 0, G2)]], GT)[0] == 1.0
  # another class with no ground truth: not suppressed, not in the mean
  assert _map([[(0.9, 0, G1), (0.8, 1, shifted), (0.7, 0, G2)]], GT, k=2)[0] == 1.0
  # COCO's rule: d2's best box (g1) is taken, it takes g2 (IoU 0.6) instead
  g1, g2 = (0.0, 0, 10, 10), (0.0, 4, 10, 14)
  ap, _ = _map([[(0.9, 0, (0, -2, 10, 8)), (0.8, 0, (0, 1.5, 10, 11.5))]], [[[0, *g1], [0, *g2]]])
  assert ap == 1.0


def test_top_detections_decode_and_rank():
  out = _outputs(0.0)
  out["logits"] = out["logits"].at[0, 1, 2, 1].set(5.0)   # point (20, 12), class 1
  d = det.top_detections(out, 5)
  assert d.score.shape == (1, 5) and np.all(np.diff(np.asarray(d.score[0])) <= 0)
  assert int(d.cls[0, 0]) == 1
  np.testing.assert_allclose(d.box[0, 0], BOXES[1, 1:], atol=1e-5)   # B, decoded exactly


def test_localization_numbers_unchanged_by_the_per_box_refactor():
  """Fast R-CNN's sum over coordinates, written out, and the chance with a float64
  residual, as before the box losses became per-box (GIoU)."""
  rng = np.random.default_rng(0)
  corners = np.sort(rng.uniform(0, 32, (64, 2, 2)), axis=1)      # x0 < x1, y0 < y1
  labels = np.concatenate([rng.integers(0, 4, (64, 1)), corners.reshape(64, 4)], 1)
  labels = labels.astype(np.float32)
  out = {"logits": jnp.asarray(rng.normal(size=(64, 4)), jnp.float32),
         "box": jnp.asarray(labels[:, 1:] + rng.normal(size=(64, 4)) * 5, jnp.float32)}
  ce = float(optax.softmax_cross_entropy_with_integer_labels(
    out["logits"], jnp.asarray(labels[:, 0], jnp.int32)).mean())
  r = out["box"] - labels[:, 1:]
  freq = np.bincount(labels[:, 0].astype(int), minlength=4) / 64
  entropy = -np.sum(freq * np.log(freq))
  res = jnp.asarray(labels[:, 1:] - labels[:, 1:].astype(np.float64).mean(0), jnp.float32)
  per_coordinate = {"l2": lambda r: 0.5 * r**2,
                    "huber": lambda r: optax.huber_loss(r, delta=1.0)}
  for name, per in per_coordinate.items():
    np.testing.assert_allclose(localization_loss(name)(out, jnp.asarray(labels)),
                               ce + float(jnp.mean(jnp.sum(per(r), -1))), rtol=1e-6)
    np.testing.assert_allclose(localization_chance(labels, 4, name),
                               entropy + float(jnp.mean(jnp.sum(per(res), -1))), rtol=1e-6)
  giou_loss = LOSSES.get("localization").bind(mlc.ConfigDict({"box_loss": "giou"}))
  np.testing.assert_allclose(giou_loss({**out, "box": jnp.asarray(labels[:, 1:])},
                                       jnp.asarray(labels)), ce, rtol=1e-5)


def _detector_config():
  c = base_config()
  c.model.name, c.model.depth, c.model.width, c.model.downsample = "detector", 3, 8, 3
  c.init.family = "he"
  return c


def test_detector_grid_prior_and_scale_rule():
  spec = build_model(_detector_config(), 4)
  x = jnp.zeros((2, 64, 64, 1))
  variables = spec.module.init(jax.random.PRNGKey(0), x)
  assert sorted(variables["params"]) == sorted(spec.layer_names)
  assert spec.layer_names[-1] == "readout" and spec.hidden_layers == ("conv_0", "conv_1", "conv_2")
  hp = {"sigma_w": jnp.float32(1.0), "sigma_b": jnp.float32(0.0)}
  params = scale_params(variables["params"], hp)
  out = spec.module.apply({"params": params}, x)   # zero input, zero biases: every conv 0
  assert out["logits"].shape == (2, 8, 8, 4) and out["centerness"].shape == (2, 8, 8)
  np.testing.assert_allclose(out["points"][0, 0, 0], [4, 4])
  np.testing.assert_allclose(out["points"][1, 7, 6], [52, 60])
  np.testing.assert_allclose(out["logits"], math.log(0.01 / 0.99), rtol=1e-6)
  np.testing.assert_allclose(out["ltrb"], 8 * LOG2, rtol=1e-6)
  doubled = scale_params(variables["params"], {**hp, "sigma_w": jnp.float32(2.0)})
  np.testing.assert_allclose(doubled["box_head"]["kernel"], 2 * params["box_head"]["kernel"])


def test_multishapes_boxes_are_tight_disjoint_and_deterministic(monkeypatch):
  monkeypatch.setattr(dd, "MULTI_NOISE", 0.0)
  images, labels = dd.render_multishapes(100, [7, 0], 16)
  again = dd.render_multishapes(100, [7, 0], 16)[1]
  np.testing.assert_array_equal(labels, again)
  counts = (labels[..., 0] >= 0).sum(1)
  assert counts.min() == 1 and counts.max() == 4 and np.all(labels[:, 4:, 0] == -1)
  for img, rows in zip(images[..., 0], labels, strict=True):
    rows = rows[rows[:, 0] >= 0].astype(int)
    covered = np.zeros(img.shape, bool)
    for _, x0, y0, x1, y1 in rows:
      part = img[y0:y1, x0:x1] > 0
      assert part[0].any() and part[-1].any() and part[:, 0].any() and part[:, -1].any()
      assert not covered[y0:y1, x0:x1].any()          # boxes do not overlap
      covered[y0:y1, x0:x1] = True
    assert not np.any((img > 0) & ~covered)           # every shape pixel in a box
  assert (dd.render_multishapes(50, [7, 0], 2)[1][..., 0] >= 0).sum(1).max() == 2


def test_coco_decoding_by_hand():
  """A 50 x 100 image letterboxed to 64: 64 x 32 at the top left; boxes to pixels, the
  unordered one ordered, the empty and the crowd ones dropped; M = 1 keeps the largest."""
  objects = {"bbox": np.array([[0.2, 0.1, 0.6, 0.5], [0.7, 0.5, 0.1, 0.0], [0, 0, 0, 0.3],
                               [0, 0, 1, 1]], np.float32),
             "label": np.array([3, 7, 9, 11]), "is_crowd": np.array([0, 0, 0, 1], bool),
             "area": np.zeros(4, np.int64), "id": np.arange(4)}
  record = {"image": np.full((50, 100, 3), 255, np.uint8), "objects": objects}
  image, labels = dd.decode_coco(record, 64, 4)
  assert image.shape == (64, 64, 3) and image[:32].min() == 255 and image[32:].max() == 0
  np.testing.assert_allclose(labels, [[3, 6.4, 6.4, 32, 19.2], [7, 0, 3.2, 32, 22.4],
                                      [-1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]], rtol=1e-5)
  np.testing.assert_allclose(dd.decode_coco(record, 64, 1)[1], [[7, 0, 3.2, 32, 22.4]],
                             rtol=1e-5)


def test_mock_coco_has_the_catalog_structure(tmp_path):
  """data.mock=4 reads TFDS's mock records of coco's declared features; without it (and
  nothing prepared) the load fails with one DatasetUnavailableError."""
  cfg = mlc.ConfigDict(dict(DATA_KEYS, name="coco", mock=4, image_size=32, max_objects=16))
  with pytest.raises(DatasetUnavailableError, match="dataset 'coco'"):
    load_dataset("coco", str(tmp_path), data_cfg=mlc.ConfigDict({**cfg.to_dict(), "mock": 0}))
  ds = load_dataset("coco", data_cfg=cfg)
  with pytest.raises(ConfigError, match="data.augment"):   # crop_flip would not move boxes
    dd._check_point({"data.name": "coco", "data.augment": "crop_flip"})
  assert ds.x_train.shape == (4, 32, 32, 3) and ds.y_test.shape == (4, 16, 5)
  assert ds.num_classes == 80 and ds.task.loss == "detection"
  rows = ds.y_train.reshape(-1, 5)
  real = rows[rows[:, 0] >= 0]
  assert len(real) and real[:, 0].max() < 80 and real[:, 1:].min() >= 0 and real[:, 1:].max() <= 32
  record = mock.declared_records(dd.coco_features(), 1)[0]
  assert record["image"].dtype == np.uint8 and record["image"].shape[-1] == 3
  assert set(record["objects"]) == {"area", "bbox", "id", "is_crowd", "label"}


def test_declared_coco_equals_tfds_own_mock():
  """Where TensorFlow is installed: the declared features are the builder's, and the
  mock records equal tfds.testing.mock_data's."""
  pytest.importorskip("tensorflow")
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    builder = tfds.builder(dd.COCO_TFDS, file_format="array_record")
    theirs = [builder.as_data_source(split="train")[i] for i in range(2)]
  assert repr(builder.info.features) == repr(dd.coco_features())
  for a, b in zip(theirs, mock.declared_records(dd.coco_features(), 2), strict=True):
    np.testing.assert_array_equal(a["objects"]["bbox"], b["objects"]["bbox"])
    np.testing.assert_array_equal(a["image"], b["image"])


def test_config_runs_from_the_cli_on_multishapes_and_mock_coco(tmp_path):
  """The quick variant over both datasets in one sweep (a data.name axis: two groups),
  coco on 8 mock records: every row has test_map50."""
  out = run_cli(
    "experiments.sweep", "--config=configs/coco_detection.py",
    "--config.quick=True", "--quiet", f"--workdir={tmp_path / 'det'}",
    "--axis=data.name=multishapes,coco", "--config.data.mock=8", "--config.train.steps=10")
  assert out.returncode == 0, out.stderr[-3000:]
  rows = results.load(str(tmp_path / "det"))
  assert rows.groupby("data.name").size().to_dict() == {"coco": 2, "multishapes": 2}
  assert rows["test_map50"].between(0, 1).all(), rows["test_map50"]
  assert rows["final_loss"].notna().all() and (rows["chance_loss"] > 0).all()
