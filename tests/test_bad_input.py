"""Bad input and run-time limits: one line on stderr, exit status 2, nothing written.

Most cases call the validation in-process (cheap); the subprocess ones are about the
command line's exit path: the slip-through of an override and an --axis on the same key,
a numpy/JAX traceback, a workdir found unusable only after training, Ctrl-C.
"""

from __future__ import annotations

import errno
import glob
import os
import signal
import subprocess
import sys
import time

import jax
import pytest
from conftest import REPO, run_cli, tiny_config

from experiments import cli
from gradlab.registry import ConfigError
from gradlab.sweep.grid import make_plan

SMOKE = "--config=configs/smoke.py"


def _run(*args, timeout=120):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


def _one_error_line(stderr: str) -> str:
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
  return lines[0]


@pytest.mark.parametrize("spec, message", [
  ("init.sigma_w=geom:1:0:5", "START and STOP must both be positive"),
  ("init.sigma_w=geom:0:1:5", "START and STOP must both be positive"),
  ("init.sigma_w=lin:1:2:-3", "NUM must be a positive whole number, got '-3'"),
  ("init.sigma_w=lin:0:1:2.5", "NUM must be a positive whole number"),
  ("init.sigma_w=geom:1:inf:3", "START and STOP must be finite"),
  ("init.sigma_w=geom:1:2", "must look like KEY=geom:START:STOP:NUM"),
])
def test_bad_axis_spacing_is_a_config_error(spec, message):
  with pytest.raises(ConfigError, match=message):
    cli.parse_axis(spec)


@pytest.mark.parametrize("sections, axes, message", [
  (dict(train=dict(steps=3_000_000_000)), None, "'train.steps' takes a whole number of at most"),
  (dict(optimizer=dict(learning_rate=float("inf"))), None,
   "'optimizer.learning_rate' takes a finite number"),
  (dict(init=dict(sigma_b=float("nan"))), None, "'init.sigma_b' takes a finite number"),
  (dict(regimes=dict(stall_fraction=float("inf"))), None,
   "'regimes.stall_fraction' takes a finite"),
  (dict(regimes=dict(stall_fraction=1.0)), None, "'regimes.stall_fraction' must lie in"),
  ({}, {"train.seed": [0, 1.5]}, "'train.seed' takes a whole number, got 1.5"),
  ({}, {"model.depth": [2.5, 3]}, "'model.depth' takes a whole number, got 2.5"),
  ({}, {"optimizer.learning_rate": [0.1, float("inf")]},
   "'optimizer.learning_rate' takes a finite number"),
])
def test_numbers_are_checked_by_key_type(sections, axes, message):
  """Whole numbers within int32 and finite reals, by the schema default's type, for the
  config's own values and for axis values alike, before anything compiles."""
  with pytest.raises(ConfigError, match=message):
    make_plan(tiny_config(axes=axes, **sections))


def test_workdir_that_is_a_file_or_unwritable_is_refused(tmp_path, monkeypatch):
  afile = tmp_path / "afile"
  afile.write_text("x")
  with pytest.raises(ConfigError, match="is a file"):
    cli.check_workdir(str(afile))
  with pytest.raises(ConfigError, match="lies under the file"):
    cli.check_workdir(str(afile / "sub"))
  cli.check_workdir(str(tmp_path / "new" / "deeper"))  # a new folder is fine ...
  assert sorted(os.listdir(tmp_path)) == ["afile"]     # ... and nothing is made
  monkeypatch.setattr(os, "access", lambda path, mode: path != str(tmp_path))
  with pytest.raises(ConfigError, match=f"no write permission on '{tmp_path}'"):
    cli.check_workdir(str(tmp_path / "new"))


def _raises(e: BaseException):
  def main() -> int:
    raise e
  return main


@pytest.mark.parametrize("error, status, message", [
  (OSError(errno.ENOSPC, "No space left on device"), 2, "keep_trajectories=False"),
  (jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                              "1.00GiB."), 2, "smaller --config.sweep.chunk_size"),
  (KeyboardInterrupt(), 130, "rerunning the same command (same --workdir) resumes"),
])
def test_run_time_limits_are_one_line(capsys, error, status, message):
  assert cli.run_cleanly(_raises(error)) == status
  line = _one_error_line(capsys.readouterr().err)
  assert message in line and "kept" in line


def test_a_bug_keeps_its_traceback():
  with pytest.raises(ValueError, match="a bug"):
    cli.run_cleanly(_raises(ValueError("a bug")))


def test_matmul_sizes_are_whole_numbers():
  from experiments.benchmark.__main__ import matmul_sizes

  assert matmul_sizes(["1024", "2048"]) == [1024, 2048]
  with pytest.raises(ConfigError, match="got 'abc'"):
    matmul_sizes(["abc"])


SWEEP = ["experiments.sweep", SMOKE, "--workdir={wd}", "--quiet"]


@pytest.mark.parametrize("command, message", [
  ([*SWEEP, "--config.model.depth=3", "--axis=model.depth=2,4"], "'model.depth' is a sweep axis"),
  ([*SWEEP, "--axis=init.sigma_w=geom:1:0:5"], "must both be positive"),
  ([*SWEEP, "--multihost"], "--multihost outside a Cloud TPU VM needs"),
  (["experiments.train", SMOKE, "--workdir={file}"], "is a file"),
  (["experiments.benchmark", "--matmul_sizes=abc", "--out={wd}"], "--matmul_sizes takes"),
])
def test_command_line_gives_one_line_and_status_2(tmp_path, command, message):
  afile = tmp_path / "afile"
  afile.write_text("x")
  out = run_cli(*[a.format(file=afile, wd=tmp_path / "wd") for a in command])
  assert out.returncode == 2, out.stderr[-2000:]
  line = _one_error_line(out.stderr)
  assert line.startswith("error: ") and message in line
  assert sorted(os.listdir(tmp_path)) == ["afile"] and afile.read_text() == "x"


def test_ctrl_c_keeps_rows_and_says_how_to_resume(tmp_path):
  """SIGINT once the first chunk's rows are written: one line, exit status 130."""
  wd = str(tmp_path / "wd")
  proc = subprocess.Popen(
    [sys.executable, "-m", "experiments.sweep", SMOKE, f"--workdir={wd}", "--quiet",
     "--config.sweep.chunk_size=1", "--config.train.steps=20000",
     "--config.train.log_every=1000"],
    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 240
  while not glob.glob(f"{wd}/results/*.parquet") and proc.poll() is None:
    assert time.monotonic() < deadline, "no rows written in time"
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-2000:]
  assert "results written so far are kept" in _one_error_line(err)
  assert glob.glob(f"{wd}/results/*.parquet")


def _bash_words(line: str) -> list[str]:
  """The words bash makes of `line` (no command runs: the words are only printed)."""
  out = subprocess.run(["bash", "-c", f"printf '%s\\0' {line}"], capture_output=True,
                       text=True, check=True)
  return out.stdout.split("\0")[:-1]


def test_tpu_vm_quotes_every_value_in_the_remote_command(tmp_path):
  workdir, config = "runs/a b; touch PWNED", "configs/my config.py"
  extra = ["--axis=init.sigma_w=1,2", "--config.data.data_dir=it's here"]
  out = subprocess.run(
    ["bash", os.path.join(REPO, "scripts", "tpu_vm.sh"), "run", "--zone=z",
     f"--workdir={workdir}", f"--config={config}", "--bucket=gs://b/x y", "--dry-run", "--",
     *extra], capture_output=True, text=True, check=True)
  words = _bash_words(out.stdout.rstrip("\n"))
  remote = words[words.index("--command") + 1]
  # Run the remote command with cd, python and gsutil as stubs that print their words.
  stubs = ("cd() { :; }; python() { printf 'python\\0'; printf '%s\\0' \"$@\"; }; "
           "gsutil() { printf 'gsutil\\0'; printf '%s\\0' \"$@\"; }; ")
  ran = subprocess.run(["bash", "-c", stubs + remote], cwd=tmp_path, capture_output=True,
                       text=True, check=True)
  assert ran.stdout.split("\0")[:-1] == [
    "python", "-m", "experiments.sweep", "--multihost", "--quiet", f"--config={config}",
    f"--workdir={workdir}", *extra,
    "gsutil", "-m", "rsync", "-r", workdir, f"gs://b/x y/{workdir}"]
  assert not os.listdir(tmp_path), "a ';' in a value ran a second command"
