"""Shared fixtures: tiny configs on the synthetic 'teacher' task (no TFDS, fast)."""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from gradlab.config import base_config, make_axes  # noqa: E402


def tiny_config(axes=None, **sections):
  """A 2-layer width-8 MLP on 'teacher' for 20 steps; `sections` override keys:
  tiny_config(optimizer=dict(name='sgd')). `axes` become the sweep axes."""
  c = base_config()
  c.model.depth = 2
  c.model.width = 8
  c.data.name = "teacher"
  c.data.batch_size = 16
  c.train.steps = 20
  c.train.log_every = 5
  c.train.eval_size = 256
  for section, values in sections.items():
    for key, value in values.items():
      c[section][key] = value
  c.sweep.axes = make_axes(axes or {})
  return c


@pytest.fixture(scope="session")
def teacher():
  from gradlab.data import load_dataset

  return load_dataset("teacher")


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """One TFDS data dir for the whole session, so gradlab's builders prepare once."""
  return str(tmp_path_factory.mktemp("tfds"))
