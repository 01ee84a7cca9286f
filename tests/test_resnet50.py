"""The ImageNet ResNet with bottleneck blocks (v1.5): the published parameter count,
shapes, and clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from conftest import run_cli, tiny_config

from gradlab.models import build_model
from gradlab.registry import ConfigError
from gradlab.sweep import grid


def _model(**kw):
  model = dict(name="resnet_bottleneck", depth=50, width=64, norm="batch", use_bias=False,
               activation="relu")
  return build_model(tiny_config(model={**model, **kw}), 1000)


def test_resnet50_has_the_published_parameter_count():
  """25,557,032 parameters at 1000 classes (He et al. 2016's ResNet-50 as torchvision
  counts it: conv kernels, BatchNorm scales and biases, fc weights and bias)."""
  model = _model()
  shapes = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0),
                                                    jnp.zeros((1, 224, 224, 3))))
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == 25_557_032
  assert len(model.layer_names) == 1 + 16 + 1  # stem, 3 + 4 + 6 + 3 blocks, readout


def test_stride_and_shapes_of_a_small_bottleneck_net():
  """At 64x64 the 7x7/2 stem, the max pool and three strided stages leave a 2x2 map; the
  logits have one row per image; with SkipInit every block starts as its shortcut."""
  model = _model(width=4, residual_init="skipinit", norm="none")
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3))
  variables = model.module.init(jax.random.PRNGKey(0), x)
  logits = model.module.apply(variables, x)
  assert logits.shape == (2, 1000)
  gains = [v["skip_gain"] for k, v in variables["params"].items() if k.startswith("block_")]
  assert len(gains) == 16 and all(float(g) == 0.0 for g in gains)


def test_bottleneck_depth_and_options_fail_early():
  with pytest.raises(ConfigError, match="50, 101, 152"):
    grid.make_plan(tiny_config(model=dict(name="resnet_bottleneck", depth=34)))
  with pytest.raises(ConfigError, match="zero_gamma"):
    grid.make_plan(tiny_config(model=dict(name="resnet_bottleneck", depth=50, norm="none",
                                          residual_init="zero_gamma")))


def test_imagenet_config_runs_on_mock_data_from_the_cli(tmp_path):
  """configs/imagenet_resnet50.py's quick variant, cut to one variant and learning rate:
  ResNet-50 (width 8) on 64 mock ImageNet images per split, centre-cropped to 32 x 32
  through the real reading path; momentum and Adam in one program."""


  from gradlab import results

  wd = str(tmp_path / "in50")
  out = run_cli(
    "experiments.sweep", "--config=configs/imagenet_resnet50.py",
     "--config.quick=True", f"--workdir={wd}", "--quiet", "--config.train.steps=10",
     "--axis=model.residual_init=none", "--axis=model.norm=batch",
     "--axis=optimizer.remedies=none", "--axis=optimizer.learning_rate=0.1")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "2 runs" in out.stdout and "1 compiles" in out.stdout
  rows = results.load(wd)
  assert sorted(rows["optimizer.name"]) == ["adam", "momentum"]
  assert rows["initial_loss"].notna().all()


def test_imagenet_centre_crop_is_the_evaluation_transform():
  """Shorter side to size * 256 / 224, then the central crop: a 100 x 200 image at size
  56 is resized to 64 x 128 and cropped to rows 4..60, columns 36..92."""
  import numpy as np

  from gradlab.data.imagenet import center_crop

  image = np.zeros((100, 200, 3), np.uint8)
  image[:, 100:] = 255  # right half white
  crop = center_crop(image, 56)
  assert crop.shape == (56, 56, 3)
  assert crop[:, :27].max() == 0 and crop[:, 30:].min() == 255  # the edge at column 28
