"""Recurrent models: shapes, recurrent init by spectral radius, gradients through time
(the linear RNN's rho^T law, Pascanu's bound for tanh), lane equivalence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from gradlab.models import MODELS, scale_params
from gradlab.registry import ConfigError


def _model_cfg(**kw):
  base = dict(depth=1, width=16, activation="tanh", readout="last", use_bias=True)
  return mlc.ConfigDict({**base, **kw})


def _hp(rho=1.0, sigma_w=1.0, sigma_b=0.0):
  return dict(sigma_w=jnp.float32(sigma_w), sigma_b=jnp.float32(sigma_b),
              spectral_radius=jnp.float32(rho))


def _params(spec, x, rho=1.0, seed=0):
  unit = spec.module.init(jax.random.PRNGKey(seed), x[:1])["params"]  # traced under jit
  return scale_params(unit, _hp(rho), spec.scale_rule)


def _half_sq(out, y):
  return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, -1))


def _probe_at(spec, x, y):
  """jit(vmap(rho -> probe_fn values)): every rho in one compile."""
  def one(rho):
    params = _params(spec, x, rho)
    probes = spec.probe_fn({"params": params}, x, y, _half_sq)
    return {**probes, "out": spec.module.apply({"params": params}, x)}
  return jax.jit(jax.vmap(one))


@pytest.mark.parametrize("name, gates", [("elman", 1), ("lstm", 4), ("gru", 3)])
def test_shapes_and_layer_names(name, gates):
  x = jnp.ones((4, 7, 2))
  for readout, out_shape in (("last", (4, 3)), ("every", (4, 7, 3))):
    spec = MODELS.get(name)(_model_cfg(depth=2, width=6, readout=readout), "lecun", 3)
    params = jax.eval_shape(lambda spec=spec: _params(spec, x))
    assert sorted(params) == sorted(spec.layer_names) and spec.layer_names[-1] == "readout"
    assert params["input_0"]["kernel"].shape == (2, gates * 6)
    assert params["input_1"]["kernel"].shape == (6, gates * 6)
    assert params["recurrent_1"]["kernel"].shape == (6, gates * 6)
    probes = _probe_at(spec, x, jnp.zeros(out_shape))(jnp.ones(1))
    assert probes["out"].shape == (1, *out_shape)
    assert probes["grad_h_norm"].shape == (1, 7) and probes["grad_h_ratio"].shape == (1,)


@pytest.mark.parametrize("rho", [0.7, 1.3])
def test_scaled_orthogonal_recurrent_kernel_has_spectral_radius_rho(rho):
  spec = MODELS.get("lstm")(_model_cfg(width=32), "lecun", 1)
  params = _params(spec, jnp.ones((1, 3, 2)), rho)
  u = np.asarray(params["recurrent_0"]["kernel"])
  for block in np.split(u, 4, axis=1):
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(block)), rho, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(params["input_0"]["bias"]), 0.0)  # sigma_b = 0


def test_gaussian_recurrent_kernel_is_a_gain_near_rho():
  init_cfg = mlc.ConfigDict(dict(recurrent_family="gaussian", forget_bias=0.0))
  spec = MODELS.get("elman")(_model_cfg(width=256), "lecun", 1, init_cfg=init_cfg)
  u = np.asarray(_params(spec, jnp.ones((1, 3, 2)), 1.5)["recurrent_0"]["kernel"])
  radius = np.abs(np.linalg.eigvals(u)).max()
  assert 1.5 * 0.9 < radius < 1.5 * 1.15  # circular law: -> 1.5 as width grows
  assert np.abs(np.linalg.eigvals(u)).min() < 0.5  # the disk is filled, not a circle


def _log_ratios(activation, rhos, steps):
  spec = MODELS.get("elman")(_model_cfg(width=24, activation=activation), "lecun", 1)
  x = jax.random.normal(jax.random.PRNGKey(1), (16, steps, 2))
  probes = _probe_at(spec, x, jnp.ones((16, 1)))(jnp.asarray(rhos, jnp.float32))
  return np.log(np.asarray(probes["grad_h_ratio"], np.float64))


def test_linear_rnn_gradient_ratio_grows_like_rho_to_the_t():
  """Orthogonal init, linear Elman RNN, readout at the last step: the slope of
  log(||dL/dh_1|| / ||dL/dh_T||) against T is log rho (it is exactly rho^(T-1))."""
  rhos = np.array([0.8, 0.95, 1.1, 1.25])
  steps = np.array([6, 18, 30])
  logs = np.stack([_log_ratios("linear", rhos, int(t)) for t in steps])  # (T, rho)
  slopes = np.polyfit(steps, logs, 1)[0]
  np.testing.assert_allclose(slopes, np.log(rhos), rtol=0.02)


def test_tanh_rnn_ratio_obeys_pascanus_bound():
  """|tanh'| <= 1 and ||U|| = rho: ||dL/dh_1|| <= rho^(T-1) ||dL/dh_T|| (Pascanu et al.
  2013, eq. 7, gamma = 1); below rho = 1 the gradient through time vanishes."""
  rhos, steps = np.array([0.5, 0.9, 1.5, 3.0]), 20
  logs = _log_ratios("tanh", rhos, steps)
  assert np.all(logs <= (steps - 1) * np.log(rhos) + 1e-4)
  assert logs[0] < np.log(1e-5)


def test_forget_bias_slows_the_lstm_gradient_decay():
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 30, 2))
  ratios = []
  for bias in (0.0, 3.0):
    init_cfg = mlc.ConfigDict(dict(recurrent_family="orthogonal", forget_bias=bias))
    spec = MODELS.get("lstm")(_model_cfg(width=16), "lecun", 1, init_cfg=init_cfg)
    ratios.append(float(_probe_at(spec, x, jnp.ones((16, 1)))(jnp.ones(1))["grad_h_ratio"][0]))
  assert ratios[1] > 100 * ratios[0]


def test_bad_options_are_config_errors():
  with pytest.raises(ConfigError, match="model.readout"):
    MODELS.get("gru")(_model_cfg(readout="first"), "lecun", 1)
  with pytest.raises(ConfigError, match="recurrent init family"):
    MODELS.get("elman")(_model_cfg(), "lecun", 1,
                        init_cfg=mlc.ConfigDict(dict(recurrent_family="unitary")))


def test_recurrent_lane_equals_single_run():
  """jit(vmap(run)) over spectral radius / lr / seed: each lane == the point run alone,
  the through-time probe included (GRU on the adding problem, generated on device)."""
  from conftest import tiny_config

  from gradlab.data import load_dataset
  from gradlab.train import build_run, hparams_from_config, make_data_arrays

  cfg = tiny_config(model=dict(name="gru", depth=1, width=8, readout="last"),
                    data=dict(name="adding", seq_len=8, batch_size=8),
                    optimizer=dict(name="sgd"), train=dict(steps=6, log_every=3, eval_size=64))
  ds = load_dataset("adding", data_cfg=cfg.data)
  run = build_run(cfg, ds.num_classes, task=ds.task).run
  data = make_data_arrays(ds, cfg.train.eval_size)
  base = hparams_from_config(cfg)
  points = [dict(spectral_radius=0.5, learning_rate=0.1, seed=0),
            dict(spectral_radius=2.0, learning_rate=0.3, seed=1)]
  hp = {k: jnp.asarray([p.get(k, v) for p in points], jnp.float32) for k, v in base.items()}
  keys = jax.vmap(jax.random.PRNGKey)(hp["seed"].astype(jnp.int32))
  lanes = jax.jit(jax.vmap(run, in_axes=(0, 0, None)))(hp, keys, data)
  assert lanes.model_probes["grad_h_norm"].shape == (2, 2, 8)
  for i in range(len(points)):
    alone = jax.jit(run)({k: v[i] for k, v in hp.items()}, keys[i], data)
    np.testing.assert_allclose(lanes.loss[i], alone.loss, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(lanes.grad_norm_by_layer[i], alone.grad_norm_by_layer,
                               rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(lanes.model_probes["grad_h_ratio"][i],
                               alone.model_probes["grad_h_ratio"], rtol=2e-5)
  assert float(lanes.model_probes["grad_h_ratio"][1, 0]) > float(
    lanes.model_probes["grad_h_ratio"][0, 0])


def test_through_time_curves_of_different_lengths_align_at_the_last_step():
  """A sweep over datasets of different sequence lengths (e.g. tone_transcription and
  librispeech) gives one panel per dataset, and a median over mixed lengths aligns the
  runs at T instead of failing."""
  import pandas as pd

  from gradlab.diagnostics.through_time import normalized_median
  from gradlab.viz.through_time import through_time_figure

  got = normalized_median([np.array([4.0, 2.0, 1.0]), np.array([8.0, 4.0, 2.0]),
                           np.array([6.0, 1.0]), np.array([np.nan, 1.0, 1.0])])
  # the NaN run dropped; at t = T-1 the normalized runs give 2, 2 and 6 (median 2); at
  # t = T-2 only the two longer runs (4, 4)
  np.testing.assert_allclose(got, [4.0, 2.0, 1.0])
  df = pd.DataFrame({"run_id": [0, 1], "data.name": ["a", "b"],
                     "init.spectral_radius": [1.0, 1.0]})
  fig = through_time_figure(df, {0: np.array([2.0, 1.0]), 1: np.array([4.0, 2.0, 1.0])})
  assert sorted(ax.get_title() for ax in fig.axes) == ["data.name=a", "data.name=b"]
