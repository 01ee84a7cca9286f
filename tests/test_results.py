"""The results store: round trip, interrupted chunks, corrupt chunks, resume refusal."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from gradlab import results
from gradlab.registry import ConfigError


def _rows(ids):
  return pd.DataFrame({"run_id": ids, "group": 0, "chunk": ids[0] // 2,
                       "init.sigma_w": [0.5 * (i + 1) for i in ids], "regime": "trained",
                       "final_loss": [1.0 / (i + 1) for i in ids]})


def _traj(ids):
  return {"run_id": np.asarray(ids), "loss": np.arange(len(ids) * 3.0).reshape(len(ids), 3),
          "layer_names": np.asarray(["dense_0", "readout"])}


def test_round_trip_and_trajectory(tmp_path):
  wd = str(tmp_path)
  results.write_chunk(wd, 0, 1, _rows([2, 3]), _traj([2, 3]))
  results.write_chunk(wd, 0, 0, _rows([0, 1]), _traj([0, 1]))
  df = results.load(wd)
  assert list(df["run_id"]) == [0, 1, 2, 3]
  np.testing.assert_allclose(df["final_loss"], [1, 1 / 2, 1 / 3, 1 / 4])
  t = results.load_trajectory(wd, 3)
  np.testing.assert_array_equal(t["loss"], [3.0, 4.0, 5.0])
  assert list(t["layer_names"]) == ["dense_0", "readout"]
  with pytest.raises(KeyError):
    results.load_trajectory(wd, 99)


def test_interrupted_chunk_is_ignored(tmp_path):
  wd = str(tmp_path)
  results.write_chunk(wd, 0, 0, _rows([0, 1]), _traj([0, 1]))
  # a sweep killed while writing chunk 1 leaves a temporary file behind
  with open(os.path.join(wd, "results", ".tmp-abc123"), "wb") as f:
    f.write(b"PAR1 half a file")
  assert list(results.load(wd)["run_id"]) == [0, 1]


def test_corrupt_chunk_is_reported(tmp_path):
  wd = str(tmp_path)
  results.write_chunk(wd, 0, 0, _rows([0, 1]), _traj([0, 1]))
  path = os.path.join(wd, "results", results.chunk_name(0, 0, "parquet"))
  with open(path, "r+b") as f:
    f.truncate(20)
  with pytest.raises(ConfigError, match="unreadable"):
    results.load(wd)


def test_rerun_skips_done_chunks_and_refuses_a_changed_config(tmp_path):
  from gradlab.sweep import run_sweep

  wd = str(tmp_path)
  cfg = tiny_config({"init.sigma_w": [0.5, 1.0, 2.0]}, sweep=dict(chunk_size=2))
  first = run_sweep(cfg, wd, progress=False)
  before = results.load(wd)
  again = run_sweep(cfg, wd, progress=False)
  assert (first.n_compiles, again.n_compiles, again.n_skipped) == (1, 0, 3)
  pd.testing.assert_frame_equal(results.load(wd), before)
  changed = tiny_config({"init.sigma_w": [0.5, 1.0, 2.0]}, sweep=dict(chunk_size=2),
                        train=dict(steps=25))
  with pytest.raises(ConfigError, match="train.steps"):
    run_sweep(changed, wd, progress=False)
  pd.testing.assert_frame_equal(results.load(wd), before)
