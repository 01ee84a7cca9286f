"""Nothing lost, nothing silent (issue 15): one writer per workdir, resume by point
identity, the forced-resume record kept, every trajectory member verified, duplicate
rows refused, and the per-chunk watchdog."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_cached

from gradlab import results
from gradlab.registry import ConfigError
from gradlab.sweep import lock, resume, run_sweep
from gradlab.sweep.watchdog import EXIT_HUNG

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")


def _python(code: str, **kw) -> subprocess.Popen:
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, TESTS])}
  return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken(
    tmp_path, cache):
  wd = str(tmp_path / "wd")
  holder = _python(f"""
    from gradlab.sweep import lock
    lock.acquire({wd!r})
    print("held", flush=True)
    import time; time.sleep(600)
  """)
  try:
    assert holder.stdout.readline().strip() == "held"
    cfg = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0]})
    with pytest.raises(ConfigError, match=f"in use by another sweep \\(pid {holder.pid} "):
      run_sweep(cfg, wd, progress=False)
    assert sorted(os.listdir(wd)) == [".lock"]  # nothing written: no config, no rows
  finally:
    holder.kill()
    holder.wait()
  # the holder died without releasing: its lock is free, the sweep runs
  stats = run_sweep(tiny_cached(cache, {"init.sigma_w": [0.5, 1.0]}), wd, progress=False)
  assert stats.n_skipped == 0 and len(results.load(wd)) == 2
  lock.acquire(wd)  # released when the sweep returned: this process can take it again
  lock.release(wd)


def test_forced_resume_with_an_extended_axis_runs_each_new_point_once(tmp_path, cache):
  """Extending an axis moves every point's grid position: by run_id the old sweep would
  look done (run_ids 0, 1 exist) and new points would never run; by point identity
  exactly the two new points run, under run_ids no row holds."""
  wd = str(tmp_path)
  run_sweep(tiny_cached(cache, {"init.sigma_w": [1.0, 2.0]}), wd, progress=False)
  before = results.load(wd)
  extended = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0, 2.0, 4.0]})
  with pytest.raises(ConfigError, match="sweep.axes"):
    run_sweep(extended, wd, progress=False)  # a different grid needs --resume=force
  stats = run_sweep(extended, wd, progress=False, resume="force")
  assert (stats.n_points, stats.n_skipped) == (4, 2)
  df = results.load(wd)
  assert sorted(df["init.sigma_w"]) == [0.5, 1.0, 2.0, 4.0]  # every point exactly once
  assert df["run_id"].is_unique
  old = df[df["init.sigma_w"].isin([1.0, 2.0])].sort_values("run_id").reset_index(drop=True)
  pd.testing.assert_frame_equal(old[before.columns], before)  # never rewritten
  # new points: 4.0 keeps its grid position 3 (free); 0.5's position 0 is taken by the
  # old row of 1.0, so it gets the next id above every id in use or planned: 4
  assert dict(zip(df["init.sigma_w"], df["run_id"], strict=True))[0.5] == 4
  assert set(df["run_id"]) - set(before["run_id"]) == {3, 4}
  # a plain rerun of the extended config finds everything done
  again = run_sweep(extended, wd, progress=False)
  assert again.n_skipped == 4 and len(results.load(wd)) == 4


def test_forced_resume_record_accumulates_and_survives_plain_reruns(tmp_path, cache):
  wd = str(tmp_path)
  run_sweep(tiny_cached(cache, {"init.sigma_w": [1.0]}), wd, progress=False)
  run_sweep(tiny_cached(cache, {"init.sigma_w": [1.0]}, train=dict(steps=25)), wd,
            progress=False, resume="force")
  run_sweep(tiny_cached(cache, {"init.sigma_w": [1.0]}, train=dict(steps=25)), wd, progress=False)
  run_sweep(tiny_cached(cache, {"init.sigma_w": [1.0]}, train=dict(steps=30)), wd,
            progress=False, resume="force")
  meta = results.read_config(wd)
  assert [r["differences"] for r in meta["resumes"]] == [["train.steps: 20 -> 25"],
                                                         ["train.steps: 25 -> 30"]]
  assert meta["resumed_with_differences"] == ["train.steps: 20 -> 25", "train.steps: 25 -> 30"]


def _damage_member(path: str, member: str) -> None:
  """Flips bytes in the middle of one member's compressed data (the zip directory and
  every other member stay whole)."""
  import zipfile

  with zipfile.ZipFile(path) as z:
    info = z.getinfo(member + ".npy")
  with open(path, "r+b") as f:
    f.seek(info.header_offset + 26)
    name_len, extra_len = np.frombuffer(f.read(4), "<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len)
    f.seek(start + info.compress_size // 2)
    chunk = bytearray(f.read(8))
    f.seek(start + info.compress_size // 2)
    f.write(bytes(b ^ 0xFF for b in chunk))


def test_damaged_trajectory_member_is_found_set_aside_numbered_and_rerun(tmp_path, cache):
  wd = str(tmp_path)
  cfg = tiny_cached(cache, {"init.sigma_w": [0.5, 1.0]}, sweep=dict(chunk_size=2))
  run_sweep(cfg, wd, progress=False)
  npz = os.path.join(wd, "trajectories", results.chunk_name(0, 0, "npz"))
  expected = results.load_trajectory(wd, 1)["grad_norm"]
  for round_ in (1, 2):
    _damage_member(npz, "grad_norm")
    with pytest.raises(ConfigError, match="is corrupt"):
      results.load_trajectory(wd, 1)  # one clear error, not a BadZipFile
    again = run_sweep(cfg, wd, progress=False)
    assert (again.n_corrupt_files, again.n_skipped) == (1, 0)
    suffix = results.CORRUPT_SUFFIX + ("" if round_ == 1 else "-2")
    assert os.path.exists(npz + suffix)  # the first copy is not overwritten
    np.testing.assert_array_equal(results.load_trajectory(wd, 1)["grad_norm"], expected)
  assert sorted(n for n in os.listdir(os.path.dirname(npz)) if "corrupt" in n) == [
    os.path.basename(npz) + ".corrupt", os.path.basename(npz) + ".corrupt-2"]


def test_load_refuses_duplicate_run_ids(tmp_path, cache):
  wd = str(tmp_path)
  run_sweep(tiny_cached(cache, {"init.sigma_w": [0.5, 1.0]}), wd, progress=False)
  src = results.chunk_files(wd)[0]
  rows = pd.read_parquet(src)
  rows.to_parquet(os.path.join(wd, "results", results.chunk_name(0, 7, "parquet")))
  with pytest.raises(ConfigError, match="holds 2 run_id\\(s\\) twice"):
    results.load(wd)


def test_point_identity_tolerates_float_round_trips_and_fills_new_axes():
  rows = pd.DataFrame({"init.sigma_w": [np.float32(0.1).item()], "seed": [0]})
  assert resume.row_keys(rows, ["init.sigma_w"], {}) == [(0.1, 0)] or (
    resume.canonical(np.float32(0.1).item()) != 0.1)
  # a row written before 'model.depth' was an axis takes the saved config's value
  rows = pd.DataFrame({"init.sigma_w": [1.0], "seed": [3]})
  assert resume.row_keys(rows, ["init.sigma_w", "model.depth"], {"model.depth": 4}) == [
    (1.0, 4, 3)]
  assert resume.point_key({"init.sigma_w": 1.0 + 1e-15, "model.depth": 4}, 3,
                          ["init.sigma_w", "model.depth"]) == (1.0, 4, 3)


def test_watchdog_ends_a_hung_chunk_with_one_line_and_a_stack_dump(tmp_path):
  """A chunk made to hang (its results never come back): the watchdog dumps every
  thread's stack into the workdir and exits with status 3 and one line; the rows of
  chunks before it are kept."""
  wd = str(tmp_path / "wd")
  proc = _python(f"""
    import time
    from conftest import tiny_cached, tiny_config
    from gradlab.sweep import executor, mesh, run_sweep
    real = mesh.local_lanes
    calls = []
    def hang_second(out):
      calls.append(1)
      if len(calls) == 2:
        time.sleep(600)
      return real(out)
    executor.mesh_lib.local_lanes = hang_second
    import gradlab.sweep.watchdog as watchdog
    watchdog.shutil.which = lambda name: None  # no gdb attach: it takes seconds
    cfg = tiny_config({{"init.sigma_w": [0.5, 1.0, 2.0]}}, sweep=dict(chunk_size=1,
                      chunk_timeout_s=2.0, compile_cache="none"))
    run_sweep(cfg, {wd!r}, progress=False)
  """)
  t0 = time.monotonic()
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == EXIT_HUNG, err
  assert time.monotonic() - t0 < 200
  lines = [ln for ln in err.splitlines() if ln.startswith("gradlab:")]
  assert len(lines) == 1 and "rerunning the same command resumes" in lines[0]
  dump = os.path.join(wd, f"hang-{proc.pid}.txt")
  with open(dump) as f:
    text = f.read()
  assert "in hang_second" in text and "Native threads" in text  # where it hung
  assert len(results.load(wd)) == 1  # the first chunk's row is kept


def test_chunks_are_dealt_to_every_host_in_turn():
  """Chunk k runs on deal_order[k % n]: local device index first, process second, so
  consecutive chunks land on different hosts (a 2-chunk group keeps both hosts busy)."""
  from types import SimpleNamespace

  from gradlab.sweep.deal import deal_order

  devs = [SimpleNamespace(id=i, process_index=i // 2) for i in (3, 0, 2, 1)]
  assert [(d.process_index, d.id) for d in deal_order(devs)] == [(0, 0), (1, 2), (0, 1), (1, 3)]
