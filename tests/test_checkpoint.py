"""Checkpointed single runs: a run stopped mid-way and restarted equals one run."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from gradlab.checkpoint import train_checkpointed
from gradlab.registry import ConfigError
from gradlab.train import train_one


def test_stopped_and_restored_run_equals_an_uninterrupted_run(tmp_path, teacher):
  cfg = tiny_config(optimizer=dict(name="adam", learning_rate=1e-2),
                    train=dict(steps=40, log_every=5), diagnostics=dict(every=10, power_iters=20))
  whole = train_one(cfg, teacher)
  ckpt = str(tmp_path / "ckpt")
  assert train_checkpointed(cfg, teacher, ckpt, every=10, stop_after=2) is None  # "killed"
  resumed = train_checkpointed(cfg, teacher, ckpt, every=10)
  for field in ("step", "loss", "grad_norm", "grad_norm_by_layer", "sharpness",
                "preconditioned_sharpness"):
    np.testing.assert_allclose(np.asarray(getattr(resumed, field)),
                               np.asarray(getattr(whole, field)), rtol=1e-5, atol=1e-7,
                               err_msg=field)
  np.testing.assert_allclose(float(resumed.final_loss), float(whole.final_loss), rtol=1e-5)
  assert int(resumed.tracker.first_nonfinite_step) == int(whole.tracker.first_nonfinite_step)


def test_interval_must_fit_the_logging(tmp_path, teacher):
  cfg = tiny_config(train=dict(steps=40, log_every=5))
  with pytest.raises(ConfigError, match="multiple of 5"):
    train_checkpointed(cfg, teacher, str(tmp_path), every=7)
