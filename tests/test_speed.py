"""Issue 16's machinery: one step program per log block, LLVM's level on the CPU, host
keys, executables relocated to another device, and one host device per core."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, tiny_config

from gradlab import compile_options, host_devices, results, train
from gradlab import step as step_lib
from gradlab.registry import ConfigError
from gradlab.sweep import grid, run_sweep
from gradlab.sweep.mesh import host_keys
from gradlab.train import build_run, hparams_from_config, make_data_arrays

TESTS = os.path.join(REPO, "tests")


def test_a_log_block_is_a_probed_step_then_plain_steps(teacher):
  """log_block runs ONE step program with a traced probe flag (a lax.cond): its params
  equal a probed step followed by log_every - 1 plain steps (the two-program form), and
  its record is the probed step's."""
  cfg = tiny_config(optimizer=dict(name="adam"))
  static = step_lib.make_static(cfg, teacher.num_classes, None, teacher.task)
  hp = {k: jnp.float32(v) for k, v in hparams_from_config(cfg).items()}
  lane = step_lib.make_lane(static, hp, jax.random.PRNGKey(1),
                            make_data_arrays(teacher, cfg.train.eval_size))
  carry, _ = train.start(static, lane)

  @jax.jit
  def merged(carry):
    return step_lib.log_block(static, lane, carry, jnp.int32(2))

  @jax.jit
  def unrolled(carry):
    first = 2 * static.log_every
    carry, record = step_lib.train_step(static, lane, carry, jnp.int32(first), probe=True)
    for s in range(1, static.log_every):
      carry, _ = step_lib.train_step(static, lane, carry, jnp.int32(first + s), probe=False)
    return carry, record

  (got, (first, rec)), (want, want_rec) = merged(carry), unrolled(carry)
  assert int(first) == 2 * static.log_every
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7),
               got.params, want.params)
  for name in ("loss", "grad_norm", "param_norm", "update_norm"):
    np.testing.assert_allclose(rec[name], want_rec[name], rtol=1e-6)
  np.testing.assert_allclose(rec["grad_norm_by_layer"], want_rec["grad_norm_by_layer"],
                             rtol=1e-6)
  assert int(got.tracker.explosion_step) == int(want.tracker.explosion_step)


def test_a_traced_probe_flag_stays_a_branch_under_vmap(teacher):
  """Under vmap over lanes the probe flag (a scan index) is not batched, so the record
  is computed in a real conditional: the vmapped block's jaxpr holds a `cond`."""
  cfg = tiny_config()
  built = build_run(cfg, teacher.num_classes, task=teacher.task)
  data = make_data_arrays(teacher, cfg.train.eval_size)
  hp = {k: jnp.full((2,), v, jnp.float32) for k, v in hparams_from_config(cfg).items()}
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(2))
  text = str(jax.make_jaxpr(jax.vmap(built.run, (0, 0, None)))(hp, keys, data))
  assert "cond[" in text


def test_compiler_options_apply_on_cpu_only_and_yield_to_xla_flags(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  assert compile_options.compiler_options(1, "cpu") == {"xla_backend_optimization_level": 1}
  assert compile_options.compiler_options(1, "gpu") is None
  assert compile_options.compiler_options(3, "cpu") is None  # XLA's own default
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
  assert compile_options.compiler_options(1, "cpu") is None


def test_cpu_opt_level_is_validated_before_any_compile():
  cfg = tiny_config(sweep=dict(cpu_opt_level=7))
  with pytest.raises(ConfigError, match="cpu_opt_level"):
    grid.make_plan(cfg)


def test_opt_levels_one_and_three_train_alike(teacher, monkeypatch):
  """LLVM level 1 (the default) and XLA's default 3 train the same runs: losses agree
  to float32 rounding (measured bit for bit on the benchmark's program)."""
  monkeypatch.setenv("XLA_FLAGS", "")  # the suite's level-0 flag would override both
  cfg = tiny_config(optimizer=dict(name="adam", learning_rate=0.01))
  built = build_run(cfg, teacher.num_classes, task=teacher.task)
  data = make_data_arrays(teacher, cfg.train.eval_size)
  hp = {k: jnp.float32(v) for k, v in hparams_from_config(cfg).items()}
  key = jax.random.PRNGKey(0)
  lowered = jax.jit(built.run).lower(hp, key, data)
  one = compile_options.compile_lowered(lowered, 1, "cpu")(hp, key, data)
  three = compile_options.compile_lowered(lowered, 3, "cpu")(hp, key, data)
  np.testing.assert_allclose(one.loss, three.loss, rtol=1e-5)
  np.testing.assert_allclose(one.final_loss, three.final_loss, rtol=1e-5)


def test_host_keys_are_jax_prng_keys():
  seeds = np.array([0, 1, 2, 41, 1234567, 2**31 - 1], np.int32)
  want = np.asarray(jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds)))
  got = host_keys(seeds)
  assert got.dtype == want.dtype
  np.testing.assert_array_equal(got, want)


def test_host_device_count_rules(monkeypatch):
  monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.delenv(host_devices.ENV, raising=False)
  assert host_devices.requested() == host_devices.cores()
  assert host_devices.requested("3") == 3
  with pytest.raises(ConfigError, match=host_devices.ENV):
    host_devices.requested("0")
  with pytest.raises(ConfigError, match=host_devices.ENV):
    host_devices.requested("many")
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
  assert host_devices.requested() is None  # the user chose already


HOST_DEVICES = """
import os, sys
sys.path[:0] = [{repo!r}, {tests!r}]
from gradlab import host_devices
n = host_devices.configure()
import jax
print("devices", n, jax.local_device_count())
"""


@pytest.mark.parametrize("env, want", [({"GRADLAB_HOST_DEVICES": "3"}, "devices 3 3"),
                                       ({"GRADLAB_HOST_DEVICES": "auto"}, None),
                                       ({"XLA_FLAGS_EXTRA": "2"}, "devices None 2")])
def test_configure_sets_the_host_devices_before_jax_starts(env, want):
  flags = os.environ.get("XLA_FLAGS", "")
  child = {k: v for k, v in os.environ.items() if k not in (host_devices.ENV,
                                                             "JAX_NUM_CPU_DEVICES")}
  if "XLA_FLAGS_EXTRA" in env:
    child["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2"
  else:
    child.update(env)
  out = subprocess.run([sys.executable, "-c", HOST_DEVICES.format(repo=REPO, tests=TESTS)],
                       env=child, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  cores = host_devices.cores()
  assert out.stdout.strip() == (want or f"devices {cores} {cores}")


TWO_DEVICES = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
import jax, numpy as np
from conftest import tiny_config
from gradlab.sweep import run_sweep
from gradlab.sweep.relocate import to_device
assert jax.device_count() == 2
stats = run_sweep(tiny_config({axes!r}, **{sections!r}), {wd!r}, progress=False)
print("compiles", stats.n_compiles, "chunk", stats.chunk_sizes[0])
fused = tiny_config({fused_axes!r}, sweep=dict(chunk_size=2, fuse_optimizers=True))
stats = run_sweep(fused, {wd!r} + "-fused", progress=False)
print("fused compiles", stats.n_compiles, "groups", stats.n_groups)
# relocation alone: the same binary on device 1 gives device 0's outputs bit for bit
f = jax.jit(lambda x: jax.numpy.tanh(x @ x.T).sum(0))
x = np.arange(12.0, dtype=np.float32).reshape(3, 4) / 7
c0 = f.lower(jax.device_put(x, jax.devices()[0])).compile()
c1 = to_device(c0, jax.devices()[1])
y1 = c1(jax.device_put(x, jax.devices()[1]))
print("relocated", list(y1.devices())[0].id, np.array_equal(np.asarray(y1), np.asarray(c0(x))))
"""


def test_two_devices_compile_once_and_give_the_one_device_rows(tmp_path):
  """Chunks dealt to 2 host devices: ONE compile (the second device loads the same
  executable: `gradlab.sweep.relocate`), and every row equals the one-device sweep's at
  the same chunk size, bit for bit, Adam included."""
  axes = {"init.sigma_w": [0.5, 1.0, 2.0], "optimizer.learning_rate": [1e-2, 1e-1]}
  sections = {"optimizer": {"name": "adam"}, "sweep": {"chunk_size": 2}}
  one = str(tmp_path / "one")
  run_sweep(tiny_config(axes, **sections), one, progress=False)
  two = str(tmp_path / "two")
  flags = os.environ.get("XLA_FLAGS", "")
  env = {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=2"}
  fused_axes = {"optimizer.name": ["sgd", "adam"], "init.sigma_w": [0.5, 1.0, 2.0]}
  script = TWO_DEVICES.format(repo=REPO, tests=TESTS, axes=axes, sections=sections, wd=two,
                              fused_axes=fused_axes)
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "compiles 1 chunk 2" in out.stdout
  assert "relocated 1 True" in out.stdout
  got, want = results.load(two), results.load(one)
  floats = [c for c in want.columns if want[c].dtype.kind == "f"]
  pd.testing.assert_frame_equal(got[["run_id", "regime", *floats]],
                                want[["run_id", "regime", *floats]], check_exact=True)
  # fused optimizers on two devices: one compile for both groups, the one-device rows
  assert "fused compiles 1 groups 2" in out.stdout
  one_fused = str(tmp_path / "one-fused")
  run_sweep(tiny_config(fused_axes, sweep=dict(chunk_size=2, fuse_optimizers=True)),
            one_fused, progress=False)
  got, want = results.load(two + "-fused"), results.load(one_fused)
  floats = [c for c in want.columns if want[c].dtype.kind == "f"]
  pd.testing.assert_frame_equal(got[["run_id", "regime", *floats]],
                                want[["run_id", "regime", *floats]], check_exact=True)


def test_memory_chosen_chunks_spread_over_the_dealt_devices():
  """With sweep.chunk_size = 0, a group of n points dealt over k devices gets chunks of
  at most ceil(n / k) lanes, so no device idles (Executor.spread_cap)."""
  from gradlab.sweep.executor import Executor

  ex = Executor.__new__(Executor)
  ex.grid, ex.spread = 1, 2
  assert ex.spread_cap(64) == 32
  assert ex.spread_cap(5) == 3
  ex.spread = 1
  assert ex.spread_cap(64) == 64


def test_fuse_optimizers_groups_only_what_can_share_a_program():
  """sweep.fuse_optimizers: sgd, adam and momentum (which evaluate their last iterate)
  share the first group's program; gadam (its iterate average) keeps its own."""
  axes = {"optimizer.name": ["sgd", "adam", "gadam", "momentum"]}
  off = grid.make_plan(tiny_config(axes))
  assert all(g.fused_with == -1 for g in off.groups)
  plan = grid.make_plan(tiny_config(axes, sweep=dict(fuse_optimizers=True)))
  by_name = {g.cfg.optimizer.name: g for g in plan.groups}
  assert by_name["sgd"].fused == ("sgd", "adam", "momentum")
  assert {by_name[n].fused_with for n in ("sgd", "adam", "momentum")} == {by_name["sgd"].index}
  assert by_name["gadam"].fused_with == -1 and by_name["gadam"].fused == ()


def test_build_fused_takes_each_lanes_own_chain():
  """Each lane's update is its own optimizer's: two steps of the fused chain equal two
  steps of sgd (index 0) and of adam (index 1) built alone."""
  from gradlab.optim import build_optimizer, paper_hparams
  from gradlab.optim.fused import INDEX_KEY, build_fused

  params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
  grads = [{"w": jnp.asarray([0.3, -1.0, 2.0])}, {"w": jnp.asarray([-0.2, 0.4, 1.0])}]
  hp = {**{k: jnp.float32(v) for k, v in paper_hparams("adam").items()},
        "learning_rate": jnp.float32(0.1)}
  for index, name in enumerate(("sgd", "adam")):
    fused = build_fused(("sgd", "adam"))({**hp, INDEX_KEY: jnp.float32(index)})
    alone = build_optimizer(name)(hp)
    p_f, s_f, p_a, s_a = params, fused.init(params), params, alone.init(params)
    for g in grads:
      u_f, s_f = fused.update(g, s_f, p_f)
      u_a, s_a = alone.update(g, s_a, p_a)
      np.testing.assert_array_equal(u_f["w"], u_a["w"])
      p_f, p_a = jax.tree.map(jnp.add, p_f, u_f), jax.tree.map(jnp.add, p_a, u_a)


def test_a_fused_sweep_compiles_once_and_gives_the_separate_rows(tmp_path):
  """Three optimizers in one program: one compile instead of three, and the rows of
  the separate programs (the same operations select each lane's update; at a
  non-chaotic learning rate the losses agree to float32 rounding)."""
  axes = {"optimizer.name": ["sgd", "adam", "momentum"], "init.sigma_w": [0.5, 1.0, 1.5]}
  rows = {}
  for fuse in (True, False):
    cfg = tiny_config(axes, optimizer=dict(learning_rate=0.01),
                      sweep=dict(fuse_optimizers=fuse), train=dict(steps=40))
    stats = run_sweep(cfg, str(tmp_path / str(fuse)), progress=False)
    assert stats.n_compiles == (1 if fuse else 3)
    rows[fuse] = results.load(str(tmp_path / str(fuse))).sort_values("run_id")
  fused, separate = rows[True], rows[False]
  assert list(fused["optimizer.name"]) == list(separate["optimizer.name"])
  for column in ("initial_loss", "final_loss", "max_grad_norm", "test_loss"):
    np.testing.assert_allclose(fused[column], separate[column], rtol=1e-5)
  assert list(fused["regime"]) == list(separate["regime"])
