"""The MLP with BatchNorm (model.norm = 'batch'): minibatch statistics in training, running
averages in evaluation, the options it refuses, and the gradient explosion at init that Yang
et al. 2019 ("A Mean Field Theory of Batch Normalization") predict for BN-ReLU networks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradlab.defaults import base_config
from gradlab.models import MODELS
from gradlab.registry import ConfigError

KEY = jax.random.PRNGKey(0)


def _mlp(depth: int = 3, width: int = 32, **kw):
  m = base_config().model
  m.depth, m.width, m.activation, m.norm, m.use_bias = depth, width, "relu", "batch", False
  for k, v in kw.items():
    m[k] = v
  return MODELS.get("mlp")(m, "he", 5)


def test_batchnorm_normalizes_each_unit_over_the_minibatch_and_keeps_running_stats():
  spec = _mlp()
  x = 3.0 + 2.0 * jax.random.normal(KEY, (64, 10))
  variables = spec.module.init(KEY, jnp.zeros((1, 10)))
  assert sorted(variables["params"]) == sorted(
    [*spec.layer_names, "norm_0", "norm_1", "norm_2"])
  assert set(variables["batch_stats"]) == {"norm_0", "norm_1", "norm_2"}
  _, state = spec.module.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"])
  # the running mean moved toward the minibatch mean (momentum 0.9 from 0)
  assert float(jnp.abs(state["batch_stats"]["norm_0"]["mean"]).max()) > 0
  # in training the output depends on the minibatch; in evaluation it does not
  train_a = spec.module.apply(variables, x, train=True, mutable=["batch_stats"])[0][:8]
  train_b = spec.module.apply(variables, x[:8], train=True, mutable=["batch_stats"])[0]
  assert not np.allclose(train_a, train_b, atol=1e-4)
  eval_a = spec.module.apply(variables, x, train=False)[:8]
  np.testing.assert_allclose(eval_a, spec.module.apply(variables, x[:8], train=False),
                             rtol=1e-5, atol=1e-5)


def test_mlp_norm_options_fail_early():
  with pytest.raises(ConfigError, match="model 'mlp' takes none, batch, layer"):
    _mlp(norm="group")
  with pytest.raises(ConfigError, match="choose one"):
    _mlp(layer_norm=True)
  spec = _mlp(norm="layer")
  variables = jax.eval_shape(spec.module.init, KEY, jnp.zeros((1, 10)))
  assert "batch_stats" not in variables and "norm_0" in variables["params"]


def test_bn_relu_gradients_explode_going_back_at_the_mean_field_rate():
  """Yang et al. 2019: ||dL/dW_l|| grows by about sqrt(pi/(pi-1)) ~ 1.21 per layer going
  back in a BN-ReLU MLP at init; without BatchNorm (He init) it does not grow (it drifts
  slightly down: the inputs' correlations through a ReLU net change the batch sum in dW)."""
  def rate(norm: str) -> float:
    spec = _mlp(depth=16, width=256, norm=norm)
    x = jax.random.normal(jax.random.PRNGKey(1), (256, 20))
    y = jax.random.randint(jax.random.PRNGKey(2), (256,), 0, 5)
    variables = spec.module.init(KEY, jnp.zeros((1, 20)))

    def loss(params):
      out = spec.module.apply({**variables, "params": params}, x, train=True,
                              mutable=["batch_stats"])[0]
      return -jnp.mean(jax.nn.log_softmax(out)[jnp.arange(256), y])

    grads = jax.grad(loss)(variables["params"])
    norms = np.array([float(jnp.linalg.norm(grads[f"dense_{i}"]["kernel"]))
                      for i in range(16)])
    return float(np.exp(-np.polyfit(np.arange(3, 13), np.log(norms[3:13]), 1)[0]))

  assert rate("batch") == pytest.approx(math.sqrt(math.pi / (math.pi - 1)), abs=0.06)
  assert 0.8 < rate("none") < 1.05
