"""Scaling pieces that run in this process: resume by run_id, corrupt chunks, config
refusal, memory-aware chunks, summaries-only sweeps, the compile cache, and the boundary
search against a closed-form boundary."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_cached, tiny_config

from gradlab import results
from gradlab.registry import ConfigError
from gradlab.sweep import memory, run_sweep

VALUE_COLUMNS = ["run_id", "regime", "initial_loss", "final_loss", "test_loss",
                 "max_grad_norm", "first_nonfinite_step"]


def _values(df: pd.DataFrame) -> pd.DataFrame:
  return df[VALUE_COLUMNS].sort_values("run_id").reset_index(drop=True)


def test_rerun_plans_only_missing_runs_whatever_the_chunking(tmp_path, cache):
  wd = str(tmp_path)
  cfg = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0, 2.0, 4.0, 8.0]}, sweep=dict(chunk_size=2))
  run_sweep(cfg, wd, progress=False)
  full = _values(results.load(wd))
  # lose the middle file (runs 2, 3); rerun with another chunk size: only they are redone
  os.remove(os.path.join(wd, "results", results.chunk_name(0, 2, "parquet")))
  cfg.sweep.chunk_size = 3
  again = run_sweep(cfg, wd, progress=False)
  assert (again.n_skipped, again.n_compiles) == (3, 1)
  df = results.load(wd)
  assert sorted(df["run_id"]) == [0, 1, 2, 3, 4]  # exactly once
  pd.testing.assert_frame_equal(_values(df), full, rtol=1e-6)
  assert results.load_trajectory(wd, 3)["loss"].shape == (4,)


@pytest.mark.parametrize("damage", ["truncate_rows", "garble_trajectories"])
def test_corrupt_chunk_is_reported_set_aside_and_rerun(tmp_path, cache, caplog, damage):
  wd = str(tmp_path)
  cfg = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0, 2.0]}, sweep=dict(chunk_size=2))
  run_sweep(cfg, wd, progress=False)
  before = _values(results.load(wd))
  name = results.chunk_name(0, 0, "parquet")
  rows_path = os.path.join(wd, "results", name)
  traj_path = os.path.join(wd, "trajectories", name.replace(".parquet", ".npz"))
  if damage == "truncate_rows":
    with open(rows_path, "r+b") as f:
      f.truncate(30)
    with pytest.raises(ConfigError, match="unreadable"):
      results.load(wd)  # loading alone never drops it silently
  else:
    with open(traj_path, "r+b") as f:
      f.truncate(os.path.getsize(traj_path) // 2)
  with caplog.at_level("WARNING", logger="gradlab"):
    again = run_sweep(cfg, wd, progress=False)
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and name in warnings[0] and "recomputed" in warnings[0]
  assert (again.n_corrupt_files, again.n_skipped) == (1, 1)
  assert os.path.exists(rows_path + results.CORRUPT_SUFFIX)
  df = results.load(wd)
  pd.testing.assert_frame_equal(_values(df), before, rtol=1e-6)
  assert results.load_trajectory(wd, 0)["loss"].shape == (4,)


def test_changed_config_is_refused_naming_the_keys_unless_forced(tmp_path, cache):
  wd = str(tmp_path)
  cfg = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0]}, sweep=dict(chunk_size=2))
  run_sweep(cfg, wd, progress=False)
  changed = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0]}, sweep=dict(chunk_size=2),
                        train=dict(steps=25), model=dict(width=9))
  with pytest.raises(ConfigError) as e:
    run_sweep(changed, wd, progress=False)
  assert "model.width: 8 -> 9" in str(e.value) and "train.steps: 20 -> 25" in str(e.value)
  assert "--resume=force" in str(e.value)
  # how a sweep runs is not what it computes: these may change without force
  same = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0]},
                     sweep=dict(chunk_size=1, memory_budget=1e9))
  same.sweep.compile_cache = "none"
  assert run_sweep(same, wd, progress=False).n_skipped == 2
  forced = run_sweep(changed, wd, progress=False, resume="force")
  assert (forced.n_skipped, forced.n_compiles) == (2, 0)
  meta = results.read_config(wd)
  assert "train.steps: 20 -> 25" in meta["resumed_with_differences"]
  with pytest.raises(ConfigError, match="unknown resume mode 'maybe'"):
    run_sweep(changed, wd, progress=False, resume="maybe")


def test_chunk_size_choice_from_a_memory_estimate():
  mib = 2**20
  # trial of 8 lanes on 2 grid devices (4 per device) needed 1 MiB of data + 4 MiB
  c = memory.choose_chunk_size(100, grid=2, trial=8, trial_bytes=5 * mib, fixed_bytes=mib,
                               budget=11 * mib)
  assert c.per_lane_bytes == mib
  # at most 10 lanes per device = 20 per chunk: 100 points -> 5 chunks of 20
  assert c.size == 20 and c.bytes_for(c.size // 2) <= 11 * mib
  # 90 points spread over 5 chunks of 18, not four of 20 and one of 10
  assert memory.choose_chunk_size(90, 2, 8, 5 * mib, mib, 11 * mib).size == 18
  assert memory.choose_chunk_size(7, 2, 8, 5 * mib, mib, 11 * mib).size == 8  # padded
  with pytest.raises(ConfigError, match="one lane needs about"):
    memory.choose_chunk_size(10, 1, 8, 5 * mib, mib, int(1.2 * mib))  # 0.5 MiB/lane
  assert memory.trial_lanes(1000, 4) == 256 and memory.trial_lanes(6, 4) == 8


def test_memory_analysis_grows_with_lanes_and_the_estimate_is_conservative():
  import jax
  import jax.numpy as jnp

  def run(lr, key):
    """50 gradient steps of a 64-wide least squares; returns the loss trajectory."""
    x = jax.random.normal(key, (256, 64))
    y = x @ jnp.ones(64)

    def step(w, _):
      loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(w)
      return w - lr * g, loss

    return jax.lax.scan(step, jnp.zeros(64), None, length=50)[1]

  def measured(lanes: int) -> int:
    fn = jax.jit(jax.vmap(run))
    return memory.compiled_bytes(fn.lower(jax.ShapeDtypeStruct((lanes,), jnp.float32),
                                          jax.ShapeDtypeStruct((lanes, 2), jnp.uint32)).compile())

  small, big = measured(4), measured(16)
  assert 0 < small < big
  # the affine model from a 4-lane trial over-estimates chunks at least as large
  choice = memory.choose_chunk_size(16, 1, 4, small, 0, budget=big)
  assert choice.bytes_for(16) >= big and choice.size < 16


def test_auto_chunks_follow_the_budget(tmp_path, monkeypatch, teacher, cache):
  from gradlab.train import make_data_arrays

  # pretend the 6-lane trial needed 6 MiB beyond the data: a budget of the data + 2.5 MiB
  # holds 2 lanes, so 3 chunks of 2, compiled once more after the trial
  cfg = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0, 2.0],
                            "optimizer.learning_rate": [1e-2, 1e-1]})
  mib = 2**20
  data_bytes = memory.tree_bytes(make_data_arrays(teacher, cfg.train.eval_size))
  monkeypatch.setattr(memory, "compiled_bytes", lambda compiled: data_bytes + 6 * mib)
  cfg.sweep.memory_budget = data_bytes + 2.5 * mib
  stats = run_sweep(cfg, str(tmp_path), progress=False)
  assert (stats.chunk_sizes, stats.n_compiles, stats.n_trial_compiles) == ({0: 2}, 1, 1)
  assert len(results.chunk_files(str(tmp_path))) == 3
  assert sorted(results.load(str(tmp_path))["run_id"]) == list(range(6))


def test_summaries_only_sweep_writes_no_trajectories(tmp_path, cache):
  wd = str(tmp_path)
  cfg = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0]}, sweep=dict(keep_trajectories=False))
  run_sweep(cfg, wd, progress=False)
  assert len(results.load(wd)) == 2
  assert not results.chunk_files(wd, results.TRAJECTORIES_DIR)
  with pytest.raises(ConfigError, match="keep_trajectories"):
    results.load_trajectory(wd, 0)


def test_compile_cache_goes_next_to_the_workdir_or_nowhere(tmp_path):
  from gradlab.sweep import cache

  assert cache.cache_dir("none", "runs/x") is None
  assert cache.cache_dir("", "runs/x") == os.path.abspath("runs/.jax_cache")
  cfg = tiny_config({"init.sigma_w": [0.5, 1.0]})
  cfg.sweep.compile_cache = ""  # the default: next to the workdir
  first = run_sweep(cfg, str(tmp_path / "wd1"), progress=False)
  cached = os.listdir(tmp_path / ".jax_cache")
  assert any(name.startswith("jit_run") for name in cached)
  second = run_sweep(cfg, str(tmp_path / "wd2"), progress=False)  # loads, not compiles
  assert second.n_compiles == first.n_compiles == 1
  # chunk_size 0 and a group that fits the budget: the trial chunk is the real one
  assert (first.n_trial_compiles, first.chunk_sizes) == (0, {0: 2})
  pd.testing.assert_frame_equal(_values(results.load(str(tmp_path / "wd2"))),
                                _values(results.load(str(tmp_path / "wd1"))))


# --------------------------------------------------------------------- boundary search


def _quadratic_config(axes, **sweep):
  """Full-batch gradient descent on 0.5 * mean ||x W - onehot||^2 (linear model, no bias):
  a quadratic with Hessian X^T X / n per output column; plain GD diverges exactly above
  lr = 2 / lambda_max, heavy ball with momentum beta above (2 + 2 beta) / lambda_max."""
  return tiny_config(axes, model=dict(name="linear", use_bias=False),
                     data=dict(name="gaussian_blobs", batch_size=0),
                     train=dict(steps=200, log_every=10, loss="mse", layer_probes=False),
                     optimizer=dict(momentum=0.5), sweep=dict(mode="boundary", **sweep))


def _lambda_max() -> float:
  from gradlab.data import load_dataset

  x = load_dataset("gaussian_blobs").x_train.astype(np.float64)
  return float(np.linalg.eigvalsh(x.T @ x / len(x)).max())


def test_boundary_search_recovers_the_gradient_descent_edge(tmp_path):
  from gradlab.sweep.boundary import dense_runs_for_same_resolution, load_boundary
  from gradlab.viz.boundary import draw_boundary

  lam = _lambda_max()
  lo, hi, rounds = 0.05, 20.0, 6
  axes = {"init.sigma_w": [0.5, 2.0], "optimizer.learning_rate": [lo, hi],
          "optimizer.name": ["sgd", "momentum"]}
  wd = str(tmp_path / "edge")
  stats = run_sweep(_quadratic_config(axes, boundary_rounds=rounds), wd, progress=False)
  found = stats.boundary
  truth = np.array([2.0, 3.0, 2.0, 3.0]) / lam  # (sigma_w, optimizer) in grid order
  assert list(found.status) == ["bracketed"] * 4
  assert np.all((found.lo <= truth) & (truth <= found.hi))
  np.testing.assert_allclose(found.hi / found.lo, (hi / lo) ** (1 / 2**rounds), rtol=1e-9)
  assert stats.n_compiles == 2  # one per optimizer, for all 8 calls of the bisection
  assert found.n_runs == 4 * (2 + rounds) == len(results.load(wd))
  assert dense_runs_for_same_resolution(4, rounds) == 4 * 65
  table = load_boundary(wd)
  np.testing.assert_allclose(table["estimate"], found.estimate)
  assert list(table["optimizer.name"]) == ["sgd", "momentum", "sgd", "momentum"]
  with open(os.path.join(wd, "boundary.json")) as f:
    info = json.load(f)
  assert (info["runs"], info["dense_runs_for_same_resolution"]) == (32, 260)
  df = results.load(wd)
  assert set(df["boundary_round"]) == set(range(rounds + 1))
  # the boundary rows are ordinary results: their regimes agree with the brackets
  last = df[df["boundary_round"] == rounds]
  assert set(last["regime"]) <= {"trained", "stalled", "exploding", "diverged"}

  # a rerun resumes: nothing to run, the same boundary
  again = run_sweep(_quadratic_config(axes, boundary_rounds=rounds), wd, progress=False)
  assert (again.n_compiles, again.n_skipped) == (0, 32)
  np.testing.assert_array_equal(again.boundary.estimate, found.estimate)

  # over a dense map of the same problem
  dense_cfg = _quadratic_config({"init.sigma_w": [0.5, 2.0],
                                 "optimizer.learning_rate": list(np.geomspace(lo, hi, 9)),
                                 "optimizer.name": ["sgd", "momentum"]})
  dense_cfg.sweep.mode = "grid"
  dense_cfg.sweep.chunk_size = 2  # the boundary's chunk shape: its executables load
  run_sweep(dense_cfg, str(tmp_path / "dense"), progress=False)
  path = draw_boundary(wd, dense_dir=str(tmp_path / "dense"))
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("sweep, match", [
  (dict(boundary_axis="model.depth"), "must name a traced number"),
  (dict(boundary_axis="init.sigma_b"), "needs it as a sweep axis"),
  (dict(boundary_rounds=-1), "boundary_rounds"),
])
def test_boundary_config_errors(tmp_path, sweep, match):
  cfg = _quadratic_config({"optimizer.learning_rate": [0.1, 1.0]}, **sweep)
  with pytest.raises(ConfigError, match=match):
    run_sweep(cfg, str(tmp_path), progress=False)
  assert not os.path.exists(os.path.join(str(tmp_path), "config.json"))


@pytest.mark.parametrize("sections, match", [
  (dict(sweep=dict(mode="dense")), "unknown sweep mode 'dense'; known: grid, boundary"),
  (dict(mesh=dict(data=3)), r"'mesh.data' \(3\) must divide the number of devices"),
  (dict(mesh=dict(data=0)), "'mesh.data' must be >= 1"),
  (dict(sweep=dict(memory_budget=-1.0)), "'sweep.memory_budget' must be >= 0"),
])
def test_scaling_config_errors_come_before_any_output(tmp_path, sections, match):
  wd = tmp_path / "wd"
  with pytest.raises(ConfigError, match=match):
    run_sweep(tiny_config({"init.sigma_w": [1.0]}, **sections), str(wd), progress=False)
  assert not wd.exists()


def test_multihost_needs_all_three_coordinates_or_none():
  from gradlab.sweep import mesh

  with pytest.raises(ConfigError, match="--coordinator, --num_processes and --process_id"):
    mesh.initialize_multihost("127.0.0.1:1234", 0, -1)
