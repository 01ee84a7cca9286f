"""Tests for the benchmark (experiments.benchmark) on its `tiny` preset.

The benchmark runs once per module through the real entry point; the tests check
structural facts that could be false (sections present, steps/s consistent with the
timings, results written, the hand FLOP formula) and that the PyTorch loop trains the
same model with the same optimizer. No test asserts a speed.
"""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.benchmark import flops, presets, report, runner, timing, torch_loop
from gradlab.models import MODELS, scale_by, scale_params

TINY = presets.PRESETS["tiny"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench_out")
  data_dir = tmp_path_factory.mktemp("bench_tfds")
  result = runner.run_benchmark(["tiny"], out_dir=str(out), data_dir=str(data_dir),
                                matmul_sizes=(64, 128), matmul_repeats=2, log=lambda _: None)
  return result, out


def _loops(section):
  loops = [section["gradlab"], section["sequential_jax"], section["probe_overhead"]["probes_off"]]
  if not section["pytorch"]["skipped"]:
    loops.append(section["pytorch"])
  return loops


def test_json_and_markdown_have_every_section(bench):
  result, out = bench
  with open(os.path.join(out, runner.JSON_FILE)) as f:
    saved = json.load(f)
  assert set(saved) == {"meta", "presets"}
  assert set(report.SECTIONS) <= set(saved["presets"]["tiny"])
  meta = saved["meta"]
  assert meta["device_kind"] == jax.devices()[0].device_kind
  assert meta["versions"]["jax"] == jax.__version__
  with open(os.path.join(out, runner.MD_FILE)) as f:
    md = f.read()
  assert "`tiny`" in md and "| sequential JAX loop |" in md and "matmul peak" in md


def test_steps_per_second_is_points_times_steps_over_wall(bench):
  section = bench[0]["presets"]["tiny"]
  assert section["preset"]["points"] == TINY.points
  for loop in _loops(section):
    assert loop["points"] == TINY.points and loop["steps"] == TINY.steps
    assert loop["wall_s"] == pytest.approx(loop["compile_s"] + loop["run_s"] + loop["other_s"])
    assert loop["steps_per_s"] == pytest.approx(TINY.points * TINY.steps / loop["wall_s"])
    assert loop["run_steps_per_s"] == pytest.approx(TINY.points * TINY.steps / loop["run_s"])
  r, g, seq = section["ratios"], section["gradlab"], section["sequential_jax"]
  assert r["gradlab_vs_sequential"] == pytest.approx(g["steps_per_s"] / seq["steps_per_s"])
  off = section["probe_overhead"]["probes_off"]
  assert r["probe_overhead"] == pytest.approx(g["run_s"] / off["run_s"] - 1)


def test_gradlab_phase_wrote_one_row_per_point(bench):
  g = bench[0]["presets"]["tiny"]["gradlab"]
  assert g["rows_written"] == TINY.points
  assert sum(g["regimes"].values()) == TINY.points
  assert g["chunks"] == g["trajectory_files"] == 1 and g["n_compiles"] == 1
  assert g["compile_s"] > 0 and g["other_s"] >= 0
  # the sweep folders live under --out only while they are timed
  assert not any(name.startswith("sweep-") for name in os.listdir(bench[1]))


def test_flop_count_is_the_hand_formula(bench):
  # tiny MLP on MNIST-1D: 40 -> 8 -> 8 -> 10, batch 8, 20 steps, 4 points
  per_step = 3 * 2 * 8 * (40 * 8 + 8 * 8 + 8 * 10)
  assert per_step == 22_272
  section = bench[0]["presets"]["tiny"]
  assert section["matmul_peak"]["grid_matmul_flops"] == per_step * 20 * 4
  m = section["matmul_peak"]
  assert m["best_gflops"] == max(m["gflops_by_size"].values())
  assert section["ratios"]["matmul_peak_fraction"] == pytest.approx(
    m["grid_matmul_flops"] / section["gradlab"]["run_s"] / 1e9 / m["best_gflops"])


def test_grid_shapes_and_axes():
  assert presets.grid_shape(64) == (8, 8)
  assert presets.grid_shape(1024) == (32, 32)
  assert presets.grid_shape(12) == (3, 4)
  assert presets.grid_shape(7) == (1, 7)
  cfg = presets.preset_config(presets.PRESETS["small"], 1024)
  axes = dict(cfg.sweep.axes.items())
  assert [len(v) for v in axes.values()] == [32, 32]
  assert axes["init.sigma_w"][0] == pytest.approx(presets.SIGMA_W_RANGE[0])
  assert axes["optimizer.learning_rate"][-1] == pytest.approx(presets.LR_RANGE[1])


def test_pytorch_skipped_with_a_note_when_torch_is_missing(monkeypatch):
  monkeypatch.setattr(runner, "import_torch", lambda: None)
  cfg = presets.preset_config(TINY)
  timing, note = runner.torch_phase(cfg, dataset=None, dims=[], threads=1, budget_s=1.0)
  assert timing is None and "not installed" in note


def test_time_points_extrapolates_a_subset():
  seen = []
  total, timed = timing.time_points(seen.append, 10, budget_s=0.0, min_points=3)
  assert timed == 3 == len(seen) and len(set(seen)) == 3
  assert total >= 0


def _flax_params(dims, sigma_w, sigma_b, seed=0):
  cfg_model = presets.preset_config(TINY).model
  cfg_model.depth, cfg_model.width = len(dims) - 1, dims[0][1]
  model, *_ = MODELS.get("mlp")(cfg_model, "lecun", dims[-1][1])
  unit = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, dims[0][0])))["params"]
  return model, scale_params(unit, scale_by(sigma_w, sigma_b))


def test_torch_mlp_and_adam_match_gradlab():
  torch = pytest.importorskip("torch")
  dims = flops.mlp_dims(40, 8, 2, 10)
  model, params = _flax_params(dims, 1.5, 0.3)
  net = torch_loop.build_mlp(torch, dims, 1.5, 0.3, torch.Generator().manual_seed(0))
  linears = [m for m in net if isinstance(m, torch.nn.Linear)]
  names = [f"dense_{i}" for i in range(len(dims) - 1)] + ["readout"]
  with torch.no_grad():
    for name, linear in zip(names, linears, strict=True):
      linear.weight.copy_(torch.from_numpy(np.asarray(params[name]["kernel"]).T.copy()))
      linear.bias.copy_(torch.from_numpy(np.array(params[name]["bias"])))
  x = np.random.default_rng(0).normal(size=(16, 40)).astype(np.float32)
  y = np.arange(16) % 10
  logits_jax = model.apply({"params": params}, x)
  np.testing.assert_allclose(net(torch.from_numpy(x)).detach().numpy(), logits_jax,
                             rtol=1e-5, atol=1e-5)

  # one Adam step from the same gradients lands on the same parameters
  def loss_fn(p):
    return optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": p}, x), jnp.asarray(y)).mean()

  tx = optax.adam(1e-2, b1=0.9, b2=0.999, eps=1e-8)
  updates, _ = tx.update(jax.grad(loss_fn)(params), tx.init(params), params)
  stepped = optax.apply_updates(params, updates)
  opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
  loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
  loss.backward()
  assert loss.item() == pytest.approx(float(loss_fn(params)), rel=1e-5)
  opt.step()
  for name, linear in zip(names, linears, strict=True):
    np.testing.assert_allclose(linear.weight.detach().numpy().T, stepped[name]["kernel"],
                               rtol=1e-5, atol=1e-6)


def test_torch_init_scale_is_lecun_times_sigma_w():
  torch = pytest.importorskip("torch")
  net = torch_loop.build_mlp(torch, [(400, 300)], sigma_w=2.0, sigma_b=0.0,
                             generator=torch.Generator().manual_seed(1))
  weight, bias = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
  assert weight.std() == pytest.approx(2.0 / math.sqrt(400), rel=0.02)
  assert np.all(bias == 0.0)


def test_best_of_keeps_the_fastest_run():
  run_seconds = iter([(5.0, 3.0), (0.1, 1.0), (0.1, 2.0)])  # (compile, run): later ones cached
  best = timing.best_of(3, lambda: timing.LoopTiming("loop", 4, 4, 10, *next(run_seconds)))
  assert best.run_s == 1.0 and best.compile_s == 5.0 and "best of 3" in best.note
  assert timing.best_of(1, lambda: None) is None  # one repeat: measured once, as is
