"""Scaling across devices and processes, each in fresh subprocesses (XLA_FLAGS and
jax.distributed must be set before JAX starts): 4 devices vs 1, two processes on
127.0.0.1 vs one, a sweep killed with SIGKILL and rerun, and the TPU VM script's dry run."""

from __future__ import annotations

import glob
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import REPO, tiny_config

from gradlab import results
from gradlab.sweep import run_sweep

TESTS = os.path.join(REPO, "tests")
VALUE_COLUMNS = ["run_id", "regime", "initial_loss", "final_loss", "test_accuracy",
                 "max_grad_norm", "first_nonfinite_step"]


def _env(devices: int) -> dict[str, str]:
  flags = os.environ.get("XLA_FLAGS", "")  # conftest's compile flags: the same numerics
  return {**os.environ,
          "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}".strip()}


def _values(df: pd.DataFrame) -> pd.DataFrame:
  return df[VALUE_COLUMNS].sort_values("run_id").reset_index(drop=True)


def _same_results(got: pd.DataFrame, want: pd.DataFrame, rtol: float) -> None:
  assert list(got["run_id"]) == sorted(set(got["run_id"]))  # every run exactly once
  pd.testing.assert_frame_equal(_values(got), _values(want), rtol=rtol)


# 5 points of sgd: nothing chaotic, so lanes agree across devices to float tolerance; 5 is
# a multiple of no mesh axis, so every chunk below is padded
AXES = {"init.sigma_w": [0.5, 1.0, 2.0, 4.0, 8.0]}
SECTIONS = {"optimizer": {"name": "sgd", "learning_rate": 0.05}}


@pytest.fixture(scope="module")
def one_device(tmp_path_factory) -> pd.DataFrame:
  """The 5-point sweep on this process's one device."""
  wd = str(tmp_path_factory.mktemp("one") / "wd")
  run_sweep(tiny_config(AXES, **SECTIONS), wd, progress=False)
  return results.load(wd)


FOUR_DEVICES = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
import jax, jax.numpy as jnp
from conftest import tiny_config
from gradlab.sweep import mesh, run_sweep
assert jax.device_count() == 4
for data, wd in (({data_sizes})):
  stats = run_sweep(tiny_config({axes!r}, **{sections!r}, mesh=dict(data=data)), wd,
                    progress=False)
  print("chunk", data, stats.n_devices, stats.chunk_sizes[0])
# the 'data' axis really splits the batch: XLA inserts the gradient's all-reduce
m = mesh.make_mesh(2)
constrain = mesh.batch_constraint(m)
def grad(w, x):
  return jax.grad(lambda w: jnp.mean((constrain(x) @ w) ** 2))(w)
f = jax.jit(jax.vmap(grad, in_axes=(0, None), spmd_axis_name="grid"),
            in_shardings=(mesh.lane_sharding(m), mesh.replicated(m)),
            out_shardings=mesh.lane_sharding(m))
text = f.lower(jnp.ones((2, 3)), jnp.ones((8, 3))).compile().as_text()
print("all-reduce" in text)
"""


def test_four_devices_give_the_one_device_results_without_padded_lanes(tmp_path, one_device):
  wds = {1: str(tmp_path / "grid4"), 2: str(tmp_path / "grid2x2")}
  script = FOUR_DEVICES.format(repo=REPO, tests=TESTS, axes=AXES, sections=SECTIONS,
                               data_sizes=", ".join(f"({d}, {w!r})" for d, w in wds.items()))
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(4),
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.split("\n")
  # 4 x 1: whole chunks dealt to devices, the memory-chosen size capped so that every
  # device gets one (ceil(5 / 4) = 2 lanes: Executor.spread_cap);
  # 2 x 2: lanes over a 2-wide grid axis, one chunk of 6
  assert "chunk 1 4 2" in lines and "chunk 2 4 6" in lines
  assert lines[-2] == "True"
  for data, wd in wds.items():
    got = results.load(wd)
    assert len(got) == 5  # the padded lanes are absent
    if data == 1:  # each device runs the one-device program on whole chunks (SGD: the
      # chunk size does not change these rows)
      pd.testing.assert_frame_equal(_values(got), _values(one_device), check_exact=True)
    else:  # data parallelism: the gradient's all-reduce sums in another order
      _same_results(got, one_device, rtol=1e-4)


ADAM = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from conftest import tiny_config
from gradlab.sweep import run_sweep
stats = run_sweep(tiny_config({axes!r}, **{sections!r}), {wd!r}, progress=False)
print("compiles", stats.n_compiles)
"""


def test_adam_on_four_devices_equals_one_device_bit_for_bit(tmp_path):
  """Adam's decay rates are per-lane traced numbers: one multi-device program (shard_map
  or pmap) rounds them differently from a one-device program (80 of the 160 default
  rows, docs/multi_device_numerics.md). Dealt whole chunks of 2 lanes (3 chunks on 3 of
  the 4 devices), every row equals the one-device row bit for bit."""
  axes = {"init.sigma_w": [0.5, 1.0, 2.0], "optimizer.learning_rate": [1e-2, 1e-1]}
  sections = {"optimizer": {"name": "adam"}, "sweep": {"chunk_size": 2}}
  one = str(tmp_path / "one")
  run_sweep(tiny_config(axes, **sections), one, progress=False)
  four = str(tmp_path / "four")
  script = ADAM.format(repo=REPO, tests=TESTS, axes=axes, sections=sections, wd=four)
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(4),
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "compiles 1" in out.stdout  # the other devices load it (gradlab.sweep.relocate)
  got, want = results.load(four), results.load(one)
  floats = [c for c in want.columns if want[c].dtype.kind == "f"]
  pd.testing.assert_frame_equal(got[["run_id", "regime", *floats]],
                                want[["run_id", "regime", *floats]], check_exact=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _sweep_cmd(*args: str, config: str = "configs/smoke.py") -> list[str]:
  return [sys.executable, "-m", "experiments.sweep", f"--config={config}", "--quiet", *args]


def _two_process_sweep(wd: str, config: str, devices: int) -> list[tuple[str, str]]:
  """Runs `config` as a two-process sweep on 127.0.0.1 (chunks of 4, `devices` CPU
  devices per process) into `wd`; both must exit 0. Returns (stdout, stderr) of each."""
  port = _free_port()
  procs = [subprocess.Popen(
    _sweep_cmd(f"--workdir={wd}", "--config.sweep.chunk_size=4", "--multihost",
               f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
               config=config),
    cwd=REPO, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs, strict=True):
    assert p.returncode == 0, err[-3000:]
  return outs


def test_two_processes_merge_to_the_one_process_results(tmp_path, one_device):
  config = tmp_path / "five.py"
  config.write_text(f"import sys\nsys.path.insert(0, {TESTS!r})\n"
                    f"from conftest import tiny_config\n\n\ndef get_config():\n"
                    f"  return tiny_config({AXES!r}, **{SECTIONS!r})\n")
  wd = str(tmp_path / "two")
  outs = _two_process_sweep(wd, str(config), devices=2)
  assert "5 runs" in outs[0][0] and "5 runs" not in outs[1][0]  # process 0 reports
  # chunks of 4 lanes dealt to the devices in process-interleaved order: chunk 0 (runs
  # 0-3) to process 0's first device, chunk 1 (run 4 and 3 padded lanes) to process 1's
  names = sorted(os.path.basename(p) for p in results.chunk_files(wd))
  assert names == sorted(results.chunk_name(0, r, "parquet", p) for r, p in
                         [(0, 0), (4, 1)])
  got = results.load(wd)
  _same_results(got, one_device, rtol=1e-5)
  assert results.load_trajectory(wd, 4)["loss"].shape == (4,)  # a run of process 1


def _smoke_reference(wd: str, steps: int, chunk_size: int) -> pd.DataFrame:
  sys.path.insert(0, REPO)
  from configs.smoke import get_config

  cfg = get_config()
  cfg.train.steps = steps
  cfg.sweep.chunk_size = chunk_size
  run_sweep(cfg, wd, progress=False)
  return results.load(wd)


def test_sigkill_mid_sweep_then_rerun_gives_every_run_exactly_once(tmp_path):
  wd = str(tmp_path / "killed")
  args = (f"--workdir={wd}", "--config.sweep.chunk_size=2", "--config.train.steps=3000")
  proc = subprocess.Popen(_sweep_cmd(*args), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 240
  pattern = os.path.join(wd, "results", "*.parquet")
  while not glob.glob(pattern) and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  survivors = len(glob.glob(pattern))
  assert 1 <= survivors < 6, f"the kill must land mid-sweep ({survivors} of 6 chunks)"
  rerun = subprocess.run(_sweep_cmd(*args), cwd=REPO, capture_output=True, text=True,
                         timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"({2 * survivors} already done)" in rerun.stdout
  got = results.load(wd)
  assert sorted(got["run_id"]) == list(range(12))
  _same_results(got, _smoke_reference(str(tmp_path / "whole"), chunk_size=2,
                                      steps=3000), rtol=1e-5)


def test_tpu_vm_script_dry_run_prints_every_command(tmp_path):
  script = os.path.join(REPO, "scripts", "tpu_vm.sh")
  where = ("--name=gl", "--zone=us-central2-b")

  def dry(command: str, *args: str) -> list[list[str]]:
    out = subprocess.run(["bash", script, command, "--dry-run", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [shlex.split(line) for line in out.stdout.splitlines() if line.strip()]

  gcloud = ["gcloud", "compute", "tpus", "tpu-vm"]
  [create] = dry("create", *where, "--type=v4-32")
  assert create[:6] == [*gcloud, "create", "gl"] and "--accelerator-type=v4-32" in create
  setup = dry("setup", *where)
  assert len(setup) == 2 and all("--worker=all" in c for c in setup)
  assert setup[0][4] == "scp" and "pip install" in setup[1][-1]
  [run] = dry("run", *where, "--workdir=runs/tpu1", "--bucket=gs://b/gl", "--",
              "--axis=init.sigma_w=0.5,1")
  assert run[4:6] == ["ssh", "gl"] and "--worker=all" in run
  remote = " ".join(shlex.split(run[-1]))  # as the worker's shell will read it
  for part in ("python -m experiments.sweep --multihost", "--workdir=runs/tpu1",
               "--axis=init.sigma_w=0.5,1", "&& gsutil -m rsync -r runs/tpu1 gs://b/gl/runs/tpu1"):
    assert part in remote, remote
  fetch = dry("fetch", *where, "--workdir=runs/tpu1", "--workers=4")
  assert [c[:2] for c in fetch[1:]] == [gcloud[:2]] * 4
  assert [next(a for a in c if a.startswith("--worker=")) for c in fetch[1:]] == [
    f"--worker={w}" for w in range(4)]
  assert dry("fetch", *where, "--workdir=runs/tpu1", "--bucket=gs://b/gl")[1] == [
    "gsutil", "-m", "rsync", "-r", "gs://b/gl/runs/tpu1", "runs/tpu1"]
  [delete] = dry("delete", *where)
  assert delete[4:6] == ["delete", "gl"] and "--quiet" in delete
  assert not (tmp_path / "runs").exists()  # a dry run changes nothing
  bad = subprocess.run(["bash", script, "launch", *where], capture_output=True, text=True)
  assert bad.returncode == 2 and "unknown subcommand 'launch'" in bad.stderr
  no_zone = subprocess.run(["bash", script, "create", "--dry-run"], capture_output=True,
                           text=True)
  assert no_zone.returncode == 2 and "--zone is required" in no_zone.stderr


def test_tpu_vm_mounts_a_bucket_data_dir_for_the_imagenet_config(tmp_path):
  """README's pod-slice command for configs/imagenet_resnet50.py with TFDS data in a
  bucket: the remote command mounts the bucket with gcsfuse (array_record cannot open
  gs:// paths) and the sweep reads the mount. Run with stub commands that print their
  words, as the worker's shell would run it."""
  out = subprocess.run(
    ["bash", os.path.join(REPO, "scripts", "tpu_vm.sh"), "run", "--dry-run", "--name=gl",
     "--zone=us-central2-b", "--config=configs/imagenet_resnet50.py", "--workdir=runs/in50",
     "--bucket=gs://my-bucket/gradlab", "--",
     "--config.data.data_dir=gs://my-bucket/tensorflow_datasets"],
    capture_output=True, text=True, check=True)
  words = shlex.split(out.stdout)
  remote = words[words.index("--command") + 1]
  stubs = "".join(f"{name}() {{ printf '{name}\\0'; printf '%s\\0' \"$@\"; }}; " for name in (
    "mkdir", "gcsfuse", "python", "gsutil")) + "cd() { :; }; mountpoint() { return 1; }; "
  ran = subprocess.run(["bash", "-c", stubs + remote], cwd=tmp_path, capture_output=True,
                       text=True, check=True)
  mount = "/tmp/gradlab-gcs/my-bucket"
  assert ran.stdout.split("\0")[:-1] == [
    "mkdir", "-p", mount,
    "gcsfuse", "--implicit-dirs", "-o", "ro", "my-bucket", mount,
    "python", "-m", "experiments.sweep", "--multihost", "--quiet",
    "--config=configs/imagenet_resnet50.py", "--workdir=runs/in50",
    f"--config.data.data_dir={mount}/tensorflow_datasets",
    "gsutil", "-m", "rsync", "-r", "runs/in50", "gs://my-bucket/gradlab/runs/in50"]


def test_a_two_process_grain_sweep_deals_its_chunks_and_merges_to_the_memory_rows(
    tmp_path, tfds_dir):
  """data.pipeline='grain' in a two-process sweep: the streamed chunks are dealt to the
  hosts (each reads only its own chunks' segments), every run is written exactly once,
  and the merged rows equal a one-process in-memory sweep's (digits, one whole-split
  segment). Before, every host ran every streamed chunk and wrote it: each run twice."""
  data = {"name": "digits", "data_dir": tfds_dir, "batch_size": 32}
  sections = {**SECTIONS, "train": {"eval_size": 0}}
  want_wd = str(tmp_path / "memory")
  run_sweep(tiny_config(AXES, data=data, **sections), want_wd, progress=False)
  streamed = {**data, "stream": 10**6, "pipeline": "grain", "workers": 0}
  config = tmp_path / "grain.py"
  config.write_text(f"import sys\nsys.path.insert(0, {TESTS!r})\n"
                    f"from conftest import tiny_config\n\n\ndef get_config():\n"
                    f"  return tiny_config({AXES!r}, data={streamed!r}, **{sections!r})\n")
  wd = str(tmp_path / "two")
  _two_process_sweep(wd, str(config), devices=1)
  names = sorted(os.path.basename(p) for p in results.chunk_files(wd))
  assert names == sorted(results.chunk_name(0, r, "parquet", p) for r, p in
                         [(0, 0), (4, 1)])  # chunk 0 by process 0, chunk 1 by process 1
  _same_results(results.load(wd), results.load(want_wd), rtol=1e-5)


SHARED_SEGMENTS = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
import jax
jax.distributed.initialize("127.0.0.1:{port}", num_processes=2, process_id={pid})
import numpy as np
from gradlab.data import grain_feed, pipeline, records
x = np.arange(70 * 3, dtype=np.float32).reshape(70, 3)
y = np.arange(70, dtype=np.int32)
source = [{{"x": x[i], "y": y[i]}} for i in range(70)]
decoder = pipeline.Decoder(records.Preloaded(), np.float32(0), np.float32(1), 0)
plan = [np.arange(0, 70, 2), np.arange(69, -1, -3)]
for (got_x, got_y), idx in zip(grain_feed.grain_segments(source, decoder, plan, False, 0,
                                                         share=True), plan):
  assert np.array_equal(got_x, x[idx]) and np.array_equal(got_y, y[idx]), idx
print("ok", jax.process_index())
"""


def test_shared_grain_segments_are_whole_on_every_host(tmp_path):
  """grain_segments(share=True) across two processes: each decodes its contiguous half
  of every segment (35 and 24 examples: uneven halves) and after the exchange both hold
  every example, in order."""
  port = _free_port()
  procs = []
  for pid in range(2):
    script = tmp_path / f"p{pid}.py"
    script.write_text(SHARED_SEGMENTS.format(repo=REPO, tests=TESTS, port=port, pid=pid))
    procs.append(subprocess.Popen([sys.executable, str(script)], cwd=REPO, env=_env(1),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outs = [p.communicate(timeout=120) for p in procs]
  for pid, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
    assert p.returncode == 0 and f"ok {pid}" in out, err[-3000:]
