"""Convolutional models: shapes, delta-orthogonal init, zero-init residuals, BatchNorm
state per lane."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from gradlab.defaults import base_config
from gradlab.models import INIT_FAMILIES, MODELS, scale_by, scale_params
from gradlab.models.cnn import ConvUnit, stride2_layers
from gradlab.models.init import delta_orthogonal
from gradlab.models.resnet import ResidualBlock
from gradlab.registry import ConfigError

KEY = jax.random.PRNGKey(0)


def _model_cfg(**kw):
  m = base_config().model
  m.width, m.activation = 8, "relu"
  for k, v in kw.items():
    m[k] = v
  return m


@pytest.mark.parametrize("name,depth,norm,residual_init,expected", [
  ("cnn", 5, "none", "none", {"logits": (3, 7)}),
  ("cnn", 2, "group", "none", {"logits": (3, 7)}),
  ("cnn_localizer", 3, "layer", "none", {"logits": (3, 7), "box": (3, 4)}),
  ("resnet", 8, "batch", "zero_gamma", {"logits": (3, 7)}),
  ("resnet", 14, "none", "skipinit", {"logits": (3, 7)}),
])
def test_output_shapes_and_layer_names(name, depth, norm, residual_init, expected):
  spec = MODELS.get(name)(_model_cfg(depth=depth, norm=norm, residual_init=residual_init),
                          "lecun", 7)
  variables = jax.eval_shape(spec.module.init, KEY, jnp.zeros((1, 8, 8, 1)))  # no compile
  out = jax.eval_shape(spec.module.apply, variables, jnp.ones((3, 8, 8, 1)))
  out = out if isinstance(out, dict) else {"logits": out}
  assert {k: v.shape for k, v in out.items()} == expected
  assert sorted(variables["params"]) == sorted(spec.layer_names)  # every parameter probed
  assert spec.layer_names[-1] == "readout"
  assert ("batch_stats" in variables) == (norm == "batch")
  if name == "resnet":
    assert len(spec.layer_names) == 2 + 3 * (depth - 2) // 6  # stem, blocks, readout


def test_resnet_depth_and_options_fail_early():
  with pytest.raises(ConfigError, match="6n \\+ 2"):
    MODELS.get("resnet")(_model_cfg(depth=10), "lecun", 10)
  with pytest.raises(ConfigError, match="needs model.norm"):
    MODELS.get("resnet")(_model_cfg(depth=8, norm="none", residual_init="zero_gamma"),
                         "lecun", 10)
  with pytest.raises(ConfigError, match="known: batch, group, layer, none"):
    MODELS.get("cnn")(_model_cfg(depth=2, norm="batchnorm"), "lecun", 10)


def test_stride2_layers_spread_evenly():
  assert stride2_layers(12, 2) == {4, 8}
  assert stride2_layers(3, 3) == {0, 1, 2}
  assert stride2_layers(2, 5) == {0, 1}           # at most one per conv
  spec = MODELS.get("cnn")(_model_cfg(depth=4, downsample=2), "lecun", 3)
  v = jax.eval_shape(spec.module.init, KEY, jnp.zeros((1, 8, 8, 1)))
  assert v["params"]["conv_3"]["conv"]["kernel"].shape == (3, 3, 8, 8)


@pytest.mark.parametrize("shape", [(3, 3, 4, 8), (5, 5, 8, 8), (3, 3, 8, 4)])
def test_delta_orthogonal_is_orthogonal_at_the_centre_tap_and_zero_elsewhere(shape):
  k = np.asarray(delta_orthogonal(KEY, shape))
  c = shape[0] // 2
  h = k[c, c]
  small = min(shape[-2:])
  gram = h @ h.T if shape[-2] <= shape[-1] else h.T @ h
  np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)
  rest = k.copy()
  rest[c, c] = 0
  assert np.all(rest == 0)
  assert INIT_FAMILIES.get("delta_orthogonal") is delta_orthogonal
  dense = np.asarray(delta_orthogonal(KEY, (6, 6)))     # Dense kernels: orthogonal
  np.testing.assert_allclose(dense @ dense.T, np.eye(6), atol=1e-5)


def test_delta_orthogonal_stack_is_an_isometry_scaled_by_sigma_w():
  """Ten linear delta-orthogonal convs (no bias) multiply every pixel's channel vector by
  an orthogonal matrix each, so the feature-map norm is multiplied by sigma_w^10."""
  x = jax.random.normal(KEY, (2, 6, 6, 8))
  for sigma_w in (1.0, 1.1):
    h = x
    for i in range(10):
      unit = ConvUnit(8, 3, 1, "none", False, "delta_orthogonal")
      params = unit.init(jax.random.PRNGKey(i), h)["params"]
      params = scale_params(params, scale_by(sigma_w, 0.0))
      h = unit.apply({"params": params}, h)
    np.testing.assert_allclose(jnp.linalg.norm(h), sigma_w**10 * jnp.linalg.norm(x), rtol=1e-4)


@pytest.mark.parametrize("residual_init,norm", [("skipinit", "none"), ("zero_gamma", "batch"),
                                                ("zero_gamma", "group")])
def test_zero_init_residual_block_is_its_shortcut(residual_init, norm):
  x = jax.random.normal(KEY, (4, 8, 8, 8))
  same = ResidualBlock(8, 1, 3, "relu", norm, residual_init, True, "lecun")
  v = same.init(KEY, x)
  v = {**v, "params": scale_params(v["params"], scale_by(2.0, 0.5))}
  out, _ = same.apply(v, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out, x, atol=1e-6)                # identity shortcut
  down = ResidualBlock(16, 2, 3, "relu", norm, residual_init, True, "lecun")
  v = down.init(KEY, x)
  out, _ = down.apply(v, x, train=True, mutable=["batch_stats"])
  proj = ConvUnit(16, 1, 2, norm, True, "lecun")
  proj_out, _ = proj.apply({k: c["shortcut"] for k, c in v.items()}, x, train=True,
                           mutable=["batch_stats"])
  np.testing.assert_allclose(out, proj_out, atol=1e-6)         # projection shortcut
  plain = ResidualBlock(8, 1, 3, "relu", norm, "none", True, "lecun")
  out, _ = plain.apply(plain.init(KEY, x), x, train=True, mutable=["batch_stats"])
  assert float(jnp.abs(out - x).max()) > 0.1                   # without it: not the identity


def test_batchnorm_lanes_are_independent_runs():
  """Each vmapped lane carries its own batch_stats: lane i == run i alone, and the lanes'
  evaluations (which read the running statistics) differ."""
  from gradlab.data import make_dataset
  from gradlab.train import build_run, hparams_from_config, make_data_arrays

  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(96, 6, 6, 1)), rng.integers(3, size=96)
  ds = make_dataset("images", x[:64], y[:64], x[64:], y[64:], 3)
  cfg = tiny_config(model=dict(name="cnn", depth=2, width=4, norm="batch", activation="relu"),
                    optimizer=dict(name="sgd"),
                    train=dict(steps=6, log_every=3, eval_size=32, layer_probes=False))
  run = build_run(cfg, ds.num_classes, task=ds.task).run
  data = make_data_arrays(ds, cfg.train.eval_size)
  hp = {k: jnp.asarray([v] * 2, jnp.float32) for k, v in hparams_from_config(cfg).items()}
  hp["learning_rate"] = jnp.asarray([0.05, 0.5], jnp.float32)
  keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray([0, 1]))
  lanes = jax.jit(jax.vmap(run, in_axes=(0, 0, None)))(hp, keys, data)
  single = jax.jit(run)
  for i in range(2):
    alone = single({k: v[i] for k, v in hp.items()}, keys[i], data)
    np.testing.assert_allclose(lanes.loss[i], alone.loss, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(lanes.test_loss[i], alone.test_loss, rtol=1e-4, atol=1e-6)
  assert abs(float(lanes.test_loss[0] - lanes.test_loss[1])) > 1e-4


def _conv1d_by_hand(x, kernel, bias, stride):
  """'SAME' 1-D convolution as XLA pads it: total padding max((ceil(L/s) - 1) s + k - L, 0),
  the smaller half on the left."""
  length, k = x.shape[1], kernel.shape[0]
  out_len = -(-length // stride)
  pad = max((out_len - 1) * stride + k - length, 0)
  xp = np.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
  return np.stack([np.einsum("bkc,kcd->bd", xp[:, t * stride:t * stride + k], kernel)
                   for t in range(out_len)], axis=1) + bias


@pytest.mark.parametrize("stride,length", [(1, 9), (2, 9), (2, 10)])
def test_conv1d_unit_equals_a_hand_written_convolution(stride, length):
  x = np.asarray(jax.random.normal(KEY, (2, length, 3)))
  unit = ConvUnit(4, 5, stride, "none", True, "lecun", dims=1)
  params = unit.init(KEY, x)["params"]
  params = scale_params(params, scale_by(1.0, 1.0))  # nonzero biases
  kernel, bias = np.asarray(params["conv"]["kernel"]), np.asarray(params["conv"]["bias"])
  assert kernel.shape == (5, 3, 4)
  out = np.asarray(unit.apply({"params": params}, x))
  np.testing.assert_allclose(out, _conv1d_by_hand(x, kernel, bias, stride), atol=1e-5)


@pytest.mark.parametrize("name,norm,pool", [("cnn", "layer", "flatten"), ("cnn", "group", "mean"),
                                            ("resnet", "batch", "mean")])
def test_1d_convolutional_models_take_sequences(name, norm, pool):
  spec = MODELS.get(name)(_model_cfg(depth=8 if name == "resnet" else 3, norm=norm,
                                     conv_dims=1, downsample=3, pool=pool), "lecun", 7)
  variables = jax.eval_shape(spec.module.init, KEY, jnp.zeros((1, 40)))  # (B, L): 1 channel
  out = jax.eval_shape(spec.module.apply, variables, jnp.ones((3, 40)))
  assert out.shape == (3, 7)
  first = "stem" if name == "resnet" else "conv_0"
  assert variables["params"][first]["conv"]["kernel"].shape == (3, 1, 8)
  if pool == "flatten":  # 40 -> 20 -> 10 -> 5 positions x 8 channels
    assert variables["params"]["readout"]["kernel"].shape == (5 * 8, 7)
  with pytest.raises(ConfigError, match="conv_dims=1 take sequences"):
    spec.module.init(KEY, jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ConfigError, match="model.conv_dims"):
    MODELS.get(name)(_model_cfg(depth=8, conv_dims=3), "lecun", 7)
  with pytest.raises(ConfigError, match="unknown model.pool 'max'"):
    MODELS.get("cnn")(_model_cfg(depth=2, pool="max"), "lecun", 7)


def test_1d_cnn_learns_where_a_bump_is():
  """A 1-D CNN (flatten readout) fits sequences whose class is the position of a bump:
  the training loss falls to a fifth of its start in 150 steps."""
  from gradlab.data import make_dataset
  from gradlab.train import build_run, hparams_from_config, make_data_arrays

  rng = np.random.default_rng(0)
  y = rng.integers(4, size=256)
  x = 0.3 * rng.normal(size=(256, 16))
  x[np.arange(256), 4 * y + 1] += 2.0
  ds = make_dataset("bumps", x[:192], y[:192], x[192:], y[192:], 4)
  cfg = tiny_config(model=dict(name="cnn", depth=2, width=8, conv_dims=1, kernel_size=3,
                               downsample=1, pool="flatten", activation="relu"),
                    optimizer=dict(name="adam", learning_rate=0.01),
                    data=dict(batch_size=32),
                    train=dict(steps=150, log_every=50, eval_size=64, layer_probes=False))
  run = build_run(cfg, ds.num_classes, task=ds.task).run
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams_from_config(cfg).items()}
  traj = jax.jit(run)(hp, KEY, make_data_arrays(ds, cfg.train.eval_size))
  assert float(traj.final_loss) < 0.2 * float(traj.initial_loss)
  assert float(traj.test_accuracy) > 0.9
