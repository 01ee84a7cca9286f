"""gradlab.tensorboard, experiments.train's WORKDIR/tensorboard and sweep.tensorboard: the
event files are read back here (TFRecord framing with its CRCs, tensorboardX's bundled
protos; no TensorFlow) and every number is checked against diagnostics.json, the result
rows, or a gradient computed independently."""

from __future__ import annotations

import json
import logging
import math
import os
import struct

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import hand_sweep, run_cli, tiny_cached, tiny_config
from tensorboardX.proto import api_pb2, plugin_hparams_pb2
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.record_writer import masked_crc32c

from gradlab import diagnose, probes, results
from gradlab import step as step_lib
from gradlab import tensorboard as tb
from gradlab.config import from_dict
from gradlab.regimes import REGIME_ORDER
from gradlab.registry import ConfigError
from gradlab.sweep import run_sweep
from gradlab.sweep.grid import make_plan
from gradlab.train import hparams_from_config, init_variables, make_data_arrays, train_one

DEPTH, WIDTH, STEPS, LOG_EVERY = 2, 16, 20, 5
TRAIN = ["--config=configs/smoke.py", f"--config.model.depth={DEPTH}",
         f"--config.model.width={WIDTH}", f"--config.train.steps={STEPS}",
         f"--config.train.log_every={LOG_EVERY}", "--config.optimizer.name=adam",
         "--config.optimizer.learning_rate=0.01"]


def read_events(path: str) -> list[Event]:
  """Every Event of a TFRecord file, each record's length and data CRC checked."""
  out = []
  with open(path, "rb") as f:
    data = f.read()
  at = 0
  while at < len(data):
    header = data[at:at + 8]
    (length,) = struct.unpack("<Q", header)
    assert struct.unpack("<I", data[at + 8:at + 12])[0] == masked_crc32c(header)
    body = data[at + 12:at + 12 + length]
    assert struct.unpack("<I", data[at + 12 + length:at + 16 + length])[0] == (
      masked_crc32c(body))
    out.append(Event.FromString(body))
    at += 16 + length
  return out


def by_tag(events: list[Event]) -> dict[str, dict[int, object]]:
  """tag -> step -> value (simple_value, a HistogramProto, or the Summary.Value)."""
  out: dict[str, dict[int, object]] = {}
  for event in events:
    for v in event.summary.value:
      kind = v.WhichOneof("value")
      value = {"simple_value": v.simple_value, "histo": v.histo}.get(kind, v)
      out.setdefault(v.tag, {})[event.step] = value
  return out


def f32(x) -> float:
  """A JSON number as TensorBoard's float32 scalar holds it (None: NaN)."""
  return float(np.float32(np.nan if x is None else x))


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
  wd = tmp_path_factory.mktemp("train")
  out = run_cli("experiments.train", *TRAIN, f"--workdir={wd}")
  assert out.returncode == 0, out.stderr[-3000:]
  with open(wd / "diagnostics.json") as f:
    diag = json.load(f)
  events = read_events(str(wd / tb.TENSORBOARD_DIR / tb.EVENT_FILE))
  return diag, by_tag(events), out.stdout, events


def test_train_scalars_equal_diagnostics_json(train_run):
  diag, tags, stdout, events = train_run
  assert events[0].file_version == "brain.Event:2"
  assert "TensorBoard: tensorboard --logdir" in stdout
  c = diag["curves"]
  steps = list(range(0, STEPS, LOG_EVERY))
  assert c["step"] == steps
  for name in ("loss", "grad_norm", "param_norm", "update_norm"):
    assert tags[name] == {s: f32(v) for s, v in zip(steps, c[name], strict=True)}, name
  layers = c["layer_names"]
  assert len(layers) == DEPTH + 1
  for j, layer in enumerate(layers):
    assert tags[f"grad_norm/{layer}"] == {
      s: f32(row[j]) for s, row in zip(steps, c["grad_norm_by_layer"], strict=True)}
    assert tags[f"update_ratio/{layer}"] == {
      s: f32(row[j]) for s, row in zip(steps, c["update_ratio_by_layer"], strict=True)}
  sh = diag["sharpness"]
  assert sh["step"] == steps and sh["compared"] == "preconditioned_sharpness"  # adam
  assert tags["sharpness"] == {s: f32(v) for s, v in zip(steps, sh["sharpness"], strict=True)}
  assert tags["sharpness/preconditioned"] == {
    s: f32(v) for s, v in zip(steps, sh["preconditioned_sharpness"], strict=True)}
  assert tags["sharpness/threshold"] == {s: f32(sh["threshold"]) for s in steps}
  assert sh["threshold"] == pytest.approx((2 + 2 * 0.9) / (0.1 * 0.01))
  assert tags["sharpness/ratio_to_threshold"] == {
    s: f32(v) for s, v in zip(steps, sh["ratio_to_threshold"], strict=True)}
  text = tags["run/text_summary"][0].tensor.string_val[0].decode()
  assert f"regime: {diag['summary']['regime']}" in text


def test_train_histograms_count_every_parameter(train_run, teacher):
  diag, tags, _, _ = train_run
  cfg = from_dict(diag["config"])
  params = diagnose.init_params(cfg, teacher.num_classes, teacher.x_train.shape[1:])[0]
  h = diag["grad_histograms"]
  assert h["layer_names"] == diag["curves"]["layer_names"]
  assert h["edges"] == [float(e) for e in probes.GRAD_HIST_EDGES]
  for j, layer in enumerate(h["layer_names"]):
    n_params = sum(x.size for x in jax.tree.leaves(params[layer]))
    hist = tags[f"grad_histogram/{layer}"]
    assert sorted(hist) == diag["curves"]["step"]
    for i, step in enumerate(diag["curves"]["step"]):
      proto = hist[step]
      assert sum(h["counts"][i][j]) == proto.num == sum(proto.bucket) == n_params
      assert list(proto.bucket_limit) == sorted(proto.bucket_limit)
      assert proto.bucket[0] > 0 and proto.bucket[-1] > 0  # empty ends trimmed
      assert proto.min == pytest.approx(h["min"][i][j]) and proto.min <= proto.max
      # the top limit is the edge at or above the largest entry
      assert proto.bucket_limit[-1] >= proto.max > proto.bucket_limit[-2]
      norm = diag["curves"]["grad_norm_by_layer"][i][j]
      assert proto.sum_squares == pytest.approx(norm**2, rel=1e-6)


def _numpy_counts(g: np.ndarray) -> np.ndarray:
  """Fixed-bin counts of `g` over probes.GRAD_HIST_EDGES, computed with numpy alone:
  bucket b holds edges[b-1] < g <= edges[b]."""
  edges = probes.GRAD_HIST_EDGES.astype(np.float64)
  bucket = np.searchsorted(edges, g.astype(np.float64), side="left")
  return np.bincount(bucket, minlength=len(edges) + 1)


def test_in_scan_histogram_equals_numpy_on_the_step_0_gradient(teacher):
  cfg = tiny_config(optimizer=dict(name="sgd", learning_rate=0.05), model=dict(width=32),
                    diagnostics=dict(grad_histograms=True))
  traj = jax.device_get(train_one(cfg, teacher))
  plain = jax.device_get(train_one(tiny_config(
    optimizer=dict(name="sgd", learning_rate=0.05), model=dict(width=32)), teacher))
  assert plain.grad_histogram is None
  for field in ("loss", "grad_norm", "grad_norm_by_layer", "final_loss"):  # only an output
    np.testing.assert_array_equal(getattr(traj, field), getattr(plain, field))
  # the step-0 gradient, outside the scan: init params, the step-0 minibatch
  static = step_lib.make_static(cfg, teacher.num_classes, None, teacher.task)
  hp = {k: np.float32(v) for k, v in hparams_from_config(cfg).items()}
  lane = step_lib.make_lane(static, hp, jax.random.PRNGKey(int(cfg.train.seed)),
                            make_data_arrays(teacher, cfg.train.eval_size))
  params, state = init_variables(static.spec, lane.init_key, lane.data.x_eval[:1], hp)
  xb, yb = step_lib.batch_at(static, lane, 0)
  grads = jax.grad(lambda p: step_lib.objective(
    static, hp, step_lib.apply_model(static, p, state, xb, train=True)[0], yb))(params)
  for j, layer in enumerate(static.layer_names):
    g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(grads[layer])])
    np.testing.assert_array_equal(traj.grad_histogram.counts[0, j], _numpy_counts(g))
    assert traj.grad_histogram.min[0, j] == pytest.approx(g.min(), rel=1e-5)
    assert traj.grad_histogram.max[0, j] == pytest.approx(g.max(), rel=1e-5)
  assert traj.grad_histogram.counts.shape == (STEPS // LOG_EVERY, len(static.layer_names),
                                              len(probes.GRAD_HIST_EDGES) + 1)


def test_histogram_buckets_and_trimmed_ends():
  edges = [-1.0, 0.0, 1.0]  # buckets (-inf, -1], (-1, 0], (0, 1], (1, inf)
  h = tb.histogram([0, 2, 3, 0], edges, -0.5, 0.75, 1.0, 2.0)
  assert list(h.bucket_limit) == [0.0, 1.0] and list(h.bucket) == [2.0, 3.0]
  assert (h.min, h.max, h.num, h.sum, h.sum_squares) == (-0.5, 0.75, 5.0, 1.0, 2.0)
  top = tb.histogram([1, 0, 0, 4], edges, -3.0, 7.0, 25.0, 1e3)
  assert list(top.bucket_limit) == [-1.0, 0.0, 1.0, np.finfo(np.float64).max]
  assert list(top.bucket) == [1.0, 0.0, 0.0, 4.0]
  assert tb.histogram([0, 0, 0, 0], edges, None, None, 0.0, 0.0) is None


def _sessions(logdir: str) -> dict[str, tuple[dict, dict]]:
  """run folder -> (hparams of its session start, its metric scalars)."""
  out = {}
  for name in sorted(os.listdir(logdir)):
    path = os.path.join(logdir, name, tb.EVENT_FILE)
    if not os.path.isfile(path):
      continue
    hparams, metrics, ended = {}, {}, False
    for event in read_events(path):
      for v in event.summary.value:
        if v.tag == "_hparams_/session_start_info":
          data = plugin_hparams_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
          for k, value in data.session_start_info.hparams.items():
            hparams[k] = getattr(value, value.WhichOneof("kind"))
        elif v.tag == "_hparams_/session_end_info":
          ended = True
        else:
          metrics[v.tag] = v.simple_value
    assert ended, name
    out[name] = (hparams, metrics)
  return out


def _experiment(logdir: str) -> api_pb2.Experiment:
  (event,) = [e for e in read_events(os.path.join(logdir, tb.EVENT_FILE)) if e.summary.value]
  (value,) = event.summary.value
  assert value.tag == "_hparams_/experiment"
  assert value.metadata.plugin_data.plugin_name == "hparams"
  return plugin_hparams_pb2.HParamsPluginData.FromString(
    value.metadata.plugin_data.content).experiment


def _check_sessions(logdir: str, rows: pd.DataFrame, axes: list[str]) -> None:
  sessions = _sessions(logdir)
  assert sorted(sessions) == sorted(tb.run_name(r) for r in rows["run_id"])
  for row in rows.to_dict("records"):
    hparams, metrics = sessions[tb.run_name(row["run_id"])]
    assert hparams["regime"] == row["regime"]
    assert metrics["regime_code"] == REGIME_ORDER.index(row["regime"])
    for axis in axes:
      want = row[axis]
      assert hparams[axis] == (want if isinstance(want, str) else pytest.approx(want))
    np.testing.assert_array_equal(metrics["final_loss"], np.float32(row["final_loss"]))
    np.testing.assert_array_equal(metrics["max_grad_norm"], np.float32(row["max_grad_norm"]))
    if math.isfinite(row.get("test_accuracy", math.nan)):
      assert metrics["test_accuracy"] == f32(row["test_accuracy"])
    else:
      assert "test_accuracy" not in metrics


def test_hparams_of_hand_made_rows(tmp_path):
  rows = hand_sweep(("sgd", "adam"))
  axes = {"init.sigma_w": [0.5, 1.0, 2.0, 4.0], "optimizer.learning_rate": [1e-3, 1e-2, 1e-1],
          "optimizer.name": ["sgd", "adam"]}
  rows["max_grad_norm"] = np.where(rows["regime"] == "diverged", np.inf, 1.0 + rows.index)
  paths = tb.write_sweep_hparams(rows, axes, str(tmp_path))
  assert len(paths) == len(rows) + 1
  _check_sessions(str(tmp_path), rows, list(axes))
  exp = _experiment(str(tmp_path))
  infos = {h.name: h for h in exp.hparam_infos}
  assert list(infos) == [*axes, "regime"]
  assert [v.string_value for v in infos["regime"].domain_discrete.values] == list(REGIME_ORDER)
  assert [v.string_value for v in infos["optimizer.name"].domain_discrete.values] == [
    "sgd", "adam"]
  assert infos["init.sigma_w"].type == api_pb2.DATA_TYPE_FLOAT64
  assert [m.name.tag for m in exp.metric_infos] == list(tb.METRICS)
  # rewriting replaces each file whole: still one event file per folder
  tb.write_sweep_hparams(rows.iloc[:3], axes, str(tmp_path))
  assert all(os.listdir(tmp_path / tb.run_name(r)) == [tb.EVENT_FILE] for r in rows["run_id"])


SWEEP_AXES = {"optimizer.learning_rate": [0.05, 1e38], "init.sigma_w": [0.5, 1.0]}


def test_sweep_writes_one_session_per_run(tmp_path, cache):
  axes = SWEEP_AXES
  cfg = tiny_cached(cache, axes, optimizer=dict(name="sgd"),
                    sweep=dict(tensorboard=True, chunk_size=2))
  run_sweep(cfg, str(tmp_path), progress=False)
  rows = results.load(str(tmp_path))
  assert len(rows) == 4 and "diverged" in set(rows["regime"])
  _check_sessions(str(tmp_path / tb.TENSORBOARD_DIR), rows, list(axes))
  assert {h.name for h in _experiment(str(tmp_path / tb.TENSORBOARD_DIR)).hparam_infos} == {
    *axes, "regime"}


def test_a_failing_writer_loses_no_rows(tmp_path, cache, monkeypatch, caplog):
  def broken(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(tb, "write_sweep_hparams", broken)
  cfg = tiny_cached(cache, SWEEP_AXES, optimizer=dict(name="sgd"),
                    sweep=dict(tensorboard=True, chunk_size=2))
  with caplog.at_level(logging.WARNING, logger="gradlab"):
    run_sweep(cfg, str(tmp_path), progress=False)
  assert sorted(results.load(str(tmp_path))["run_id"]) == [0, 1, 2, 3]  # both chunks ran
  assert sum("_write_tensorboard failed on runs" in r.getMessage()
             and "disk full" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize("section, key, value, message", [
  ("sweep", "tensorboard", None, "config key 'sweep.tensorboard' takes true/false, got None"),
  ("diagnostics", "grad_histograms", None,
   "config key 'diagnostics.grad_histograms' takes true/false, got None"),
])
def test_bad_switch_is_one_config_error(section, key, value, message):
  cfg = tiny_config()
  cfg[section][key] = value
  with pytest.raises(ConfigError) as err:
    make_plan(cfg)
  assert str(err.value) == message


def test_tensorboard_is_not_a_sweep_axis():
  with pytest.raises(ConfigError, match="'sweep.tensorboard' cannot be a sweep axis"):
    make_plan(tiny_config({"sweep.tensorboard": [True, False]}))
