"""Paper defaults per optimizer (set numbers win) and Gadam's defaults: average_start =
train.steps // 2 and SWA's BatchNorm update for the averaged weights."""

from __future__ import annotations

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from conftest import tiny_config
from ml_collections import config_flags

from gradlab import evaluation, results
from gradlab import step as step_lib
from gradlab.optim import (
  OPTIMIZER_INFO,
  eval_params,
  number_columns,
  paper_hparams,
  resolve_numbers,
)
from gradlab.optim.registry import OPTIMIZER_HPARAMS
from gradlab.registry import ConfigError
from gradlab.sweep import make_plan, run_sweep
from gradlab.train import hparams_from_config, make_data_arrays, run_parts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shared numbers every optimizer used before paper defaults: sgd and adam keep them.
TODAY = {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}


def _numbers(cfg):
  """optimizer name -> {short key: the first point's value} of the plan of `cfg`."""
  return {g.cfg.optimizer.name: {k: v[0] for k, v in g.hparams.items()}
          for g in make_plan(cfg).groups}


def test_unset_numbers_take_each_optimizers_paper_defaults():
  got = _numbers(tiny_config({"optimizer.name": ["lion", "adadelta", "sgd", "adam"]}))
  assert (got["lion"]["b2"], got["lion"]["learning_rate"]) == (0.99, 1e-4)  # Chen et al.
  assert (got["adadelta"]["learning_rate"], got["adadelta"]["eps"]) == (1.0, 1e-6)  # Zeiler
  for name in ("sgd", "adam"):  # unchanged: adam's paper numbers are the shared ones
    assert {k: got[name][k] for k in TODAY} == TODAY
  assert OPTIMIZER_INFO.get("adam").defaults == {}
  assert OPTIMIZER_INFO.get("sgd").reads == ("learning_rate",)


def test_a_set_number_wins_even_when_it_equals_the_shared_default():
  cfg = tiny_config(optimizer=dict(name="lion", b2=0.999))           # config file
  assert _numbers(cfg)["lion"]["b2"] == 0.999
  cfg = tiny_config({"optimizer.b2": [0.9, 0.95]}, optimizer=dict(name="lion"))  # axis
  assert make_plan(cfg).groups[0].hparams["b2"] == [0.9, 0.95]
  numbers = resolve_numbers("lion", {"b2": 0.5, "learning_rate": None}, 100, axes={"b2"})
  assert numbers.values["b2"] == 0.5 and numbers.sources["b2"] == "axis"
  assert (numbers.values["learning_rate"], numbers.sources["learning_rate"]) == (1e-4, "paper")
  assert numbers.sources["weight_decay"] == "shared"


def test_config_flags_and_config_files_still_set_numbers():
  def parse(*overrides):
    argv = ["prog", f"--config={REPO}/configs/optimizers.py", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                    sys_argv=argv)
    fv(argv)
    return fv.config

  cfg = parse("--config.optimizer.b2=0.99", "--config.optimizer.learning_rate=3")
  assert (cfg.optimizer.b2, cfg.optimizer.learning_rate, cfg.optimizer.b1) == (0.99, 3.0, None)
  assert cfg.optimizer.average_start == 150.0  # set by the config file
  group = next(g for g in make_plan(cfg).groups if g.cfg.optimizer.name == "adam")
  assert (group.hparams["b2"][0], group.hparams["b1"][0]) == (0.99, 0.9)
  with pytest.raises(Exception, match="float"):
    parse("--config.optimizer.b2=abc")
  cfg.sweep.axes = type(cfg.sweep.axes)({"optimizer.b2": ["x"]})
  with pytest.raises(ConfigError, match="'optimizer.b2' takes a number"):
    make_plan(cfg)


def test_gadam_averages_the_second_half_by_default():
  assert paper_hparams("gadam", steps=301)["average_start"] == 150.0
  got = _numbers(tiny_config({"optimizer.name": ["gadam", "adam"]}, train=dict(steps=40)))
  assert got["gadam"]["average_start"] == 20.0
  set_zero = _numbers(tiny_config(optimizer=dict(name="gadam", average_start=0)))
  assert set_zero["gadam"]["average_start"] == 0.0
  # a single run (train_one, diagnose) resolves the same way
  cfg = tiny_config(optimizer=dict(name="gadam"), train=dict(steps=40))
  assert hparams_from_config(cfg)["average_start"] == 20.0


def test_number_columns_hold_the_used_values_where_they_differ():
  hp = {k: [v, v] for k, v in OPTIMIZER_HPARAMS.items()}
  lion = {**hp, "b2": [0.99, 0.99]}
  cols = number_columns([("sgd", hp), ("lion", lion), ("adam", hp)],
                        skip=("optimizer.learning_rate",))
  assert [sorted(c) for c in cols] == [["optimizer.b2"]] * 3  # b1: 0.9 for every reader
  assert np.isnan(cols[0]["optimizer.b2"]).all()              # sgd does not read b2
  assert cols[1]["optimizer.b2"] == [0.99, 0.99] and cols[2]["optimizer.b2"] == [0.999] * 2


def test_rows_and_config_json_record_the_numbers_used(tmp_path):
  cfg = tiny_config({"optimizer.name": ["lion", "adam"]}, optimizer=dict(eps=1e-7),
                    train=dict(steps=5, log_every=5, eval_size=32, layer_probes=False))
  run_sweep(cfg, str(tmp_path), progress=False)
  df = results.load(str(tmp_path)).set_index("optimizer.name")
  assert (df.loc["lion", "optimizer.b2"], df.loc["adam", "optimizer.b2"]) == (0.99, 0.999)
  assert (df.loc["lion", "optimizer.learning_rate"],
          df.loc["adam", "optimizer.learning_rate"]) == (1e-4, 1e-3)
  assert "optimizer.b1" not in df and "optimizer.eps" not in df  # the same for every row
  with open(os.path.join(tmp_path, "config.json")) as f:
    saved = json.load(f)
  numbers = {g["optimizer"]: g["numbers"] for g in saved["optimizer_numbers"]}
  assert numbers["lion"]["b2"] == {"value": 0.99, "source": "paper"}
  assert numbers["adam"]["b2"] == {"value": 0.999, "source": "shared"}
  assert numbers["adam"]["eps"] == {"value": 1e-7, "source": "config"}
  assert saved["config"]["optimizer"]["b2"] is None  # unset in the config as given


# ------------------------------------------------------------------ SWA's BatchNorm update
def _bn_setup(name):
  from gradlab.data import make_dataset

  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(96, 6, 6, 1)), rng.integers(3, size=96)
  ds = make_dataset("images", x[:64], y[:64], x[64:], y[64:], 3)
  cfg = tiny_config(model=dict(name="cnn", depth=2, width=4, norm="batch", activation="relu"),
                    optimizer=dict(name=name, learning_rate=0.05),
                    train=dict(steps=6, log_every=3, eval_size=32, layer_probes=False))
  cfg = make_plan(cfg).groups[0].cfg  # numbers resolved: gadam averages steps 3..6
  static = step_lib.make_static(cfg, ds.num_classes, None, ds.task)
  hp = {k: jnp.float32(v) for k, v in hparams_from_config(cfg).items()}
  data = make_data_arrays(ds, cfg.train.eval_size)
  return static, hp, data


def _pre_bn_statistics(static, lane, params, state, steps):
  """Closed form: per BatchNorm path, the mean over the batches drawn at `steps` of the
  batch mean and (biased) variance of the BatchNorm's input, model in train mode."""
  inputs = {}

  def grab(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.BatchNorm):
      inputs.setdefault(context.module.path, []).append(np.asarray(args[0], np.float64))
    return next_fun(*args, **kwargs)

  for s in steps:
    with nn.intercept_methods(grab):
      step_lib.apply_model(static, params, state, step_lib.batch_at(static, lane, s)[0], True)
  axes = lambda h: tuple(range(h.ndim - 1))  # noqa: E731
  return {path: (np.mean([h.mean(axes(h)) for h in hs], 0),
                 np.mean([h.var(axes(h)) for h in hs], 0)) for path, hs in inputs.items()}


def _gadam_run(static, hp, key, data):
  """A gadam run's trajectory, its averaged weights, the last iterate's state, the
  recomputed state, and the test loss with each state."""
  parts = run_parts(static, hp, key, data)
  carry, initial_loss = parts.start()
  carry, outs = parts.advance(carry, 0, static.n_logs)
  traj = parts.finish(carry, outs, initial_loss)
  averaged = eval_params("gadam", carry.opt_state, carry.params)
  lane = step_lib.make_lane(static, hp, key, data)
  state = evaluation.eval_state(static, lane, averaged, carry.state, 6)
  return (traj, averaged, carry.state, state,
          evaluation.evaluate(static, lane, averaged, state)[0],
          evaluation.evaluate(static, lane, averaged, carry.state)[0])


def test_gadam_recomputes_batchnorm_statistics_for_the_averaged_weights():
  static, hp, data = _bn_setup("gadam")
  key = jax.random.PRNGKey(0)
  traj, averaged, last_state, state, test_loss, stale_loss = jax.jit(
    lambda hp, key, data: _gadam_run(static, hp, key, data))(hp, key, data)
  lane = step_lib.make_lane(static, hp, key, data)
  n_batches = math.ceil(64 / static.batch_size)
  expected = _pre_bn_statistics(static, lane, averaged, last_state, range(6, 6 + n_batches))
  assert expected  # the CNN has BatchNorm layers
  for path, (mean, var) in expected.items():
    got, last = state["batch_stats"], last_state["batch_stats"]
    for part in path:
      got, last = got[part], last[part]
    np.testing.assert_allclose(got["mean"], mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["var"], var, rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(last["mean"]) - mean).max() > 1e-3  # not the last iterate's
  # the run's test loss is evaluated with the recomputed statistics
  np.testing.assert_allclose(traj.test_loss, test_loss, rtol=1e-5)
  assert abs(float(traj.test_loss - stale_loss)) > 1e-4


def test_optimizers_evaluated_at_their_last_iterate_keep_their_statistics():
  static, hp, data = _bn_setup("adam")
  lane = step_lib.make_lane(static, hp, jax.random.PRNGKey(0), data)
  params, state = lane.tx, {"batch_stats": {"x": jnp.ones(3)}}
  assert evaluation.eval_state(static, lane, params, state, 6) is state
