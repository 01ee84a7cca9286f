"""train.remat: blocks rematerialized with nn.remat train exactly as without it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from gradlab.models import build_model
from gradlab.registry import ConfigError
from gradlab.sweep import grid
from gradlab.train import build_run, hparams_from_config, make_data_arrays


def _run(cfg, dataset):
  built = build_run(cfg, dataset.num_classes, task=dataset.task)
  hp = {k: jnp.full((2,), v, jnp.float32) for k, v in hparams_from_config(cfg).items()}
  hp["sigma_w"] = jnp.asarray([0.8, 1.5], jnp.float32)
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(2))
  data = make_data_arrays(dataset, cfg.train.eval_size)
  return jax.jit(jax.vmap(built.run, (0, 0, None)))(hp, keys, data)


@pytest.fixture(scope="module")
def images():
  from gradlab.data import make_dataset

  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(96, 8, 8, 1)), rng.integers(3, size=96)
  return make_dataset("images", x[:64], y[:64], x[64:], y[64:], 3)


@pytest.mark.parametrize("model", [dict(name="resnet", depth=8, width=4, norm="batch"),
                                   dict(name="cnn", depth=3, width=4)])
def test_remat_gives_the_same_trajectory(model, images):
  """One more forward per step, the same numbers: every loss, gradient norm and final
  metric equals the run without remat (the forward is recomputed from the block's
  input by the same operations)."""
  runs = {}
  for remat in (False, True):
    cfg = tiny_config(model=model, data=dict(batch_size=16),
                      train=dict(remat=remat, steps=10, log_every=5, eval_size=32))
    runs[remat] = _run(cfg, images)
  for field in ("loss", "grad_norm", "grad_norm_by_layer", "final_loss", "test_accuracy"):
    np.testing.assert_allclose(getattr(runs[True], field), getattr(runs[False], field),
                               rtol=1e-6)


def test_remat_is_applied_as_a_remat_primitive():
  cfg = tiny_config(model=dict(name="resnet", depth=8, width=4), train=dict(remat=True))
  model = build_model(cfg, 10)
  x = jnp.zeros((2, 8, 8, 1))
  variables = model.module.init(jax.random.PRNGKey(0), x)
  jaxpr = jax.make_jaxpr(lambda v: model.module.apply(v, x, train=True,
                                                      mutable=["batch_stats"]))(variables)
  assert "remat" in {e.primitive.name.rstrip("0123456789") for e in jaxpr.jaxpr.eqns}


def test_remat_on_a_model_without_blocks_is_one_clear_error():
  with pytest.raises(ConfigError, match="train.remat"):
    grid.make_plan(tiny_config(model=dict(name="mlp"), train=dict(remat=True)))
