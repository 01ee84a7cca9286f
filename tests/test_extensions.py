"""The extension contract of docs/extending.md: model state through the scan, sown
probes, generated tasks, masked and regression losses, augmentation, quick variants and
streamed training."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from gradlab import config as config_lib
from gradlab import defaults, losses, results
from gradlab.data import Task, augment, make_dataset
from gradlab.data import stream as stream_lib
from gradlab.losses import z_loss
from gradlab.models.registry import MODELS, Model, build_model
from gradlab.sweep import rows, run_sweep
from gradlab.train import build_run, hparams_from_config, make_data_arrays, train_one


class _InputNorm(nn.Module):
  """BatchNorm straight on the inputs, then a readout; sows a probe per block."""

  momentum: float = 0.9
  blocks: int = 12

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, name="bn")(x)
    for i in range(self.blocks):
      self.sow("intermediates", "probe_block_index", jnp.float32(i))
    return nn.Dense(3, name="readout")(h)


@MODELS.register("_test_input_norm")
def _build(model_cfg, init_family, num_outputs):
  return Model(_InputNorm(), ["readout"])


def _tiny_dataset(x, y, task=None):
  return make_dataset("tiny", x, y, x, y, 3, task=task or Task(), standardize_x=False)


def test_batch_stats_are_carried_per_lane_with_the_closed_form_running_mean():
  """Full-batch steps on fixed inputs: the running mean after k updates is
  (1 - m^k) * batch mean (it starts at 0), per lane, whatever each lane's lr."""
  rng = np.random.default_rng(0)
  x = (rng.standard_normal((64, 5)) + np.arange(5)).astype(np.float32)
  ds = _tiny_dataset(x, rng.integers(0, 3, 64))
  cfg = tiny_config(model=dict(name="_test_input_norm"), data=dict(batch_size=0),
                    train=dict(steps=7, log_every=7, eval_size=0))
  run = build_run(cfg, 3, task=ds.task)
  data = make_data_arrays(ds, 0)
  hp = {k: jnp.asarray([v, v], jnp.float32) for k, v in hparams_from_config(cfg).items()}
  hp["learning_rate"] = jnp.asarray([1e-3, 1.0])

  def final_state(h, key):
    p = run.parts(h, key, data)
    carry, _ = p.start()
    carry, _ = p.advance(carry, 0, run.n_logs)
    return carry[4]["batch_stats"]["bn"]["mean"]

  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(2))
  means = jax.vmap(final_state)(hp, keys)
  expected = (1 - 0.9 ** 7) * x.mean(axis=0)
  np.testing.assert_allclose(np.asarray(means), np.stack([expected, expected]), rtol=1e-5)


def test_sown_probes_are_stacked_in_module_order_per_logged_step():
  rng = np.random.default_rng(1)
  ds = _tiny_dataset(rng.standard_normal((32, 5)).astype(np.float32), rng.integers(0, 3, 32))
  cfg = tiny_config(model=dict(name="_test_input_norm"), train=dict(steps=6, log_every=2))
  traj = train_one(cfg, ds)
  probe = np.asarray(traj.model_probes["block_index"])
  assert probe.shape == (3, 12)
  np.testing.assert_array_equal(probe, np.tile(np.arange(12.0), (3, 1)))
  cols = rows.model_probe_columns({"block_index": probe[None],
                                     "blown": np.array([[[1.0, np.nan], [2.0, 0.5]]])})
  assert cols["block_index_max"][0] == 11 and cols["block_index_init"][0] == 11
  assert cols["blown_init"][0] == np.inf and cols["blown_final"][0] == 2.0


def test_a_generated_task_trains_on_its_sampler_not_on_its_stored_split():
  """The stored split says class 0; the sampler says class 2 for every input: a model
  trained on the sampler predicts 2, so its accuracy on the stored labels is 0."""
  x = np.ones((16, 4), np.float32)

  def sampler(key, batch_size):
    xb = jax.random.normal(key, (batch_size, 4))
    return xb, jnp.full((batch_size,), 2, jnp.int32)

  ds = make_dataset("gen", x, np.zeros(16, np.int32), x, np.full(16, 2), 3,
                    task=Task(sampler=sampler, chance=0.0), standardize_x=False)
  cfg = tiny_config(optimizer=dict(name="sgd", learning_rate=0.5),
                    train=dict(steps=60, log_every=10, eval_size=0))
  traj = train_one(cfg, ds)
  assert float(traj.test_accuracy) == 1.0       # test labels are the sampler's class
  assert float(traj.final_loss) > float(traj.initial_loss)  # stored labels: worse


def test_cross_entropy_ignores_minus_one_positions_and_regression_chance_is_half_variance():
  logits = jnp.array([[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]])
  labels = jnp.array([[0, -1, 1]])
  by_hand = np.mean([np.log1p(np.exp(-2.0)), np.log(2.0)])
  np.testing.assert_allclose(float(losses.cross_entropy(logits, labels)), by_hand, rtol=1e-6)
  assert float(losses.accuracy(logits, labels)["accuracy"]) == 0.5  # argmax tie -> 0
  t = np.array([0.0, 1.0, 2.0, 3.0])
  assert losses.squared_error_chance(t, 1) == pytest.approx(0.5 * t.var())
  out = jnp.array([[1.0], [1.0], [1.0], [1.0]])
  assert float(losses.squared_error(out, jnp.asarray(t))) == pytest.approx(
    0.5 * np.mean((1 - t) ** 2))


def test_crop_flip_output_is_a_shifted_and_maybe_flipped_copy():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 8, 8, 2))
  out = np.asarray(augment.crop_flip(jax.random.PRNGKey(1), x))
  pad = augment.crop_padding(8)
  padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  shifts = set()
  for i in range(6):
    found = [(dy, dx, f) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
             for f in (0, 1)
             if np.array_equal(out[i], (lambda c: c[:, ::-1] if f else c)(
               padded[i, dy:dy + 8, dx:dx + 8]))]
    assert found, i
    shifts.add(found[0])
  assert len(shifts) > 1  # examples draw their own crop


def test_quick_variant_applies_its_overrides_except_the_command_lines():
  cfg = defaults.base_config()
  cfg.quick = True
  cfg.quick_overrides = config_lib.make_axes({"train.steps": 40, "data.name": "digits",
                                              "sweep.axes": {"init.sigma_w": [1, 2]}})
  out = defaults.apply_quick(cfg, ["train.steps"])
  assert out.train.steps == cfg.train.steps and out.data.name == "digits"
  assert dict(out.sweep.axes) == {"init.sigma_w": (1, 2)}
  cfg.quick_overrides = config_lib.make_axes({"train.stepz": 1})
  with pytest.raises(config_lib.ConfigError, match="train.stepz"):
    defaults.apply_quick(cfg)
  cfg.quick = False
  assert defaults.apply_quick(cfg) is cfg


def test_streaming_the_whole_split_equals_training_in_memory(tmp_path, tfds_dir):
  """digits through tfds.data_source: a segment holding the whole split gives the same
  rows as the in-memory run; smaller segments are distinct draws from the split."""
  rows = {}
  for stream in (0, 10**6):
    cfg = tiny_config(axes={"optimizer.learning_rate": [0.01, 0.1]},
                      data=dict(name="digits", data_dir=tfds_dir, stream=stream,
                                batch_size=32), train=dict(eval_size=0))
    run_sweep(cfg, str(tmp_path / f"s{stream}"), progress=False)
    rows[stream] = results.load(str(tmp_path / f"s{stream}")).sort_values("run_id")
  for col in ("final_loss", "test_loss", "test_accuracy", "max_grad_norm"):
    np.testing.assert_allclose(rows[0][col], rows[10**6][col], rtol=1e-6)
  a, b = (stream_lib.segment_indices(1437, 300, i, seed=0) for i in (0, 1))
  assert len(set(a)) == 300 and a.max() < 1437 and not np.array_equal(a, b)
  assert stream_lib.blocks_per_segment(512, 32, 5, 0) == 3
  assert stream_lib.blocks_per_segment(512, 32, 5, 2) == 2


def test_the_init_section_reaches_builders_that_read_it():
  cfg = tiny_config(model=dict(name="lstm", depth=1, width=4),
                    init=dict(forget_bias=3.0, recurrent_family="gaussian"))
  module = build_model(cfg, 2).module
  assert module.forget_bias == 3.0 and module.recurrent_family == "gaussian"
  cfg.init.recurrent_family = "gausian"
  with pytest.raises(config_lib.ConfigError, match="gausian"):
    build_model(cfg, 2)


def test_z_loss_leaves_out_positions_the_cross_entropy_ignores():
  logits = jnp.array([[[0.0, np.log(3.0)], [0.0, 0.0]]])  # log Z = log 4, log 2
  np.testing.assert_allclose(float(z_loss(logits, jnp.array([[1, -1]]))), np.log(4.0) ** 2,
                             rtol=1e-6)
  np.testing.assert_allclose(float(z_loss(logits, jnp.array([[1, 0]]))),
                             (np.log(4.0) ** 2 + np.log(2.0) ** 2) / 2, rtol=1e-6)
