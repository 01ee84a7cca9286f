"""The grain input pipeline (`gradlab.data.pipeline`, `gradlab.data.grain_feed`), the
host-side records and augmentation (`gradlab.data.records`) and the streamed ImageNet
path on mock data."""

from __future__ import annotations

import ml_collections as mlc
import numpy as np
import pytest
from conftest import tiny_config

from gradlab import results
from gradlab.data import pipeline, records, stream
from gradlab.data.imagenet import ImagenetReader, center_crop
from gradlab.data.loader import DATA_KEYS
from gradlab.registry import ConfigError
from gradlab.sweep import run_sweep
from gradlab.sweep.grid import make_plan


def _data_cfg(**values) -> mlc.ConfigDict:
  cfg = mlc.ConfigDict(dict(DATA_KEYS, **pipeline.PIPELINE_KEYS, image_size=224))
  for key, value in values.items():
    cfg[key] = value
  return cfg


def test_a_grain_fed_sweep_gives_the_rows_of_the_in_memory_path(tmp_path, tfds_dir):
  """digits: the whole split in memory, and streamed as one whole-split segment read by
  grain worker processes, give the same rows bit for bit."""
  rows = {}
  for name, data in {"memory": dict(stream=0),
                     "grain": dict(stream=10**6, pipeline="grain", workers=1)}.items():
    cfg = tiny_config(axes={"optimizer.learning_rate": [0.01, 0.1]},
                      data=dict(name="digits", data_dir=tfds_dir, batch_size=32, **data),
                      train=dict(eval_size=0))
    run_sweep(cfg, str(tmp_path / name), progress=False)
    rows[name] = results.load(str(tmp_path / name)).sort_values("run_id")
  for col in ("final_loss", "test_loss", "test_accuracy", "max_grad_norm", "regime"):
    assert list(rows["memory"][col]) == list(rows["grain"][col]), col


def test_grain_and_the_main_process_read_the_same_augmented_segments():
  """Mock ImageNet streamed with the random-resized crop: grain's workers and the main
  process give the same segments bit for bit (the draws depend on (seed, segment,
  position) only); segments differ from each other and from the evaluation crops."""
  cfg = _data_cfg(name="imagenet2012", mock=24, stream=8, image_size=16,
                  host_augment="inception_crop")
  main = stream.open_stream("imagenet2012", None, cfg, eval_size=4)
  cfg.pipeline, cfg.workers = "grain", 2
  fed = stream.open_stream("imagenet2012", None, cfg, eval_size=4)
  plan = [np.arange(8), np.arange(8), np.arange(8, 20)]
  a, b = list(main.segments(plan)), list(fed.segments(plan))
  for (xa, ya), (xb, yb) in zip(a, b, strict=True):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  assert a[0][0].shape == (8, 16, 16, 3) and a[2][0].shape == (12, 16, 16, 3)
  assert not np.array_equal(a[0][0], a[1][0])  # same records, other segment: other crops
  np.testing.assert_array_equal(a[0][1], a[1][1])
  np.testing.assert_array_equal(main.dataset.x_test, fed.dataset.x_test)
  assert fed.dataset.num_classes == 1000 and fed.dataset.x_test.shape == (24, 16, 16, 3)


def test_inception_crop_draws_patches_of_the_stated_area_and_aspect():
  """Szegedy et al. 2015: area fraction in [0.08, 1], aspect ratio in [3/4, 4/3] (up to
  rounding), inside the image; the central square when no draw fits."""
  rng = np.random.default_rng(0)
  boxes = [records.inception_box(300, 500, rng) for _ in range(2000)]
  area = np.array([h * w / (300 * 500) for _, _, h, w in boxes])
  ratio = np.array([w / h for _, _, h, w in boxes])
  assert all(t >= 0 and left >= 0 and t + h <= 300 and left + w <= 500
             for t, left, h, w in boxes)
  assert area.min() > 0.07 and area.max() <= 1.0 and area.mean() > 0.3
  assert ratio.min() > 0.72 and ratio.max() < 1.4
  assert records.inception_box(1, 1000, np.random.default_rng(0)) == (0, 499, 1, 1)
  image = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
  out = records.inception_crop(image, (16, 16), np.random.default_rng(1))
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_the_eval_reader_is_the_centre_crop_and_test_size_keeps_the_head():
  reader = ImagenetReader(16)
  image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
  x, y = reader.example({"image": image, "label": 7})
  np.testing.assert_array_equal(x, center_crop(image, 16).astype(np.float32))
  assert y == 7
  cfg = _data_cfg(name="imagenet2012", mock=12, stream=4, image_size=8, test_size=5)
  assert stream.open_stream("imagenet2012", None, cfg, eval_size=3).dataset.x_test.shape == (
    5, 8, 8, 3)


def test_host_shares_partition_every_segment_in_order():
  for n, p in ((10, 3), (7, 4), (3, 5)):
    shares = [pipeline.host_share(n, q, p) for q in range(p)]
    assert shares[0][0] == 0 and shares[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:], strict=False))
  items = pipeline.plan_pieces([np.arange(100, 170)], True, 1, 2, piece=16)
  assert [(s, start, len(idx)) for s, start, idx in items] == [
    (0, 35, 16), (0, 51, 16), (0, 67, 3)]
  assert items[0][2][0] == 135


@pytest.mark.parametrize("data, message", [
  (dict(pipeline="graim"), "'data.pipeline' is 'graim'; known: memory, grain"),
  (dict(pipeline="grain"), "'data.stream' is 0: grain feeds a streamed train split"),
  (dict(host_augment="inception_crop"), "host augmentation redraws examples per segment"),
  (dict(host_augment="incepton_crop", stream=8), "did you mean 'inception_crop'"),
  (dict(workers=-2), "'data.workers' is -2"),
])
def test_bad_pipeline_keys_are_config_errors(data, message):
  with pytest.raises(ConfigError, match=message):
    make_plan(tiny_config(data=data))


def test_the_imagenet_configs_full_variant_streams_through_grain():
  """configs/imagenet_resnet50.py's accelerator variant plans (validated, no compile)
  with the grain pipeline, random-resized crops and a test subset; its quick variant
  goes back to the in-memory path. (The full path runs end to end in docs/imagenet.md's
  dry-run command; a ResNet-50 compile is too slow for the suite.)"""
  import importlib

  from gradlab.defaults import apply_quick

  cfg = importlib.import_module("configs.imagenet_resnet50").get_config()
  plan = make_plan(cfg)
  data = plan.groups[0].cfg.data
  assert (data.pipeline, data.stream, data.host_augment, data.test_size) == (
    "grain", 25600, "inception_crop", 10000)
  cfg.quick = True
  quick = apply_quick(cfg)
  assert (quick.data.pipeline, quick.data.stream, quick.data.augment) == (
    "memory", 0, "crop_flip")
