"""Shared fixtures: tiny configs on the synthetic 'teacher' task (no TFDS, fast)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

# The suite's time is mostly XLA compiles of tiny programs: skip LLVM's expensive
# optimizations (about 20% less wall time on 2 cores). Set before JAX starts, and
# inherited by the subprocesses the tests start (they add to it, never replace it).
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

from gradlab.config import make_axes  # noqa: E402
from gradlab.defaults import base_config  # noqa: E402


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
  # No step-0 sharpness unless a test asks for it: 'auto' measures it for squared losses
  # (RNN and quadratic tests), which costs compile time and is not what they check.
  c.diagnostics.initial = "off"
  for section, values in sections.items():
    for key, value in values.items():
      c[section][key] = value
  c.sweep.axes = make_axes(axes or {})
  return c


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
  """One compile cache per test module: a chunk shape compiles once, then loads."""
  return str(tmp_path_factory.mktemp("jax_cache"))


def tiny_cached(cache: str, axes=None, **sections):
  """`tiny_config` whose sweeps use the compile cache `cache`."""
  cfg = tiny_config(axes, **sections)
  cfg.sweep.compile_cache = cache
  return cfg


@pytest.fixture(scope="session")
def teacher():
  from gradlab.data import load_dataset

  return load_dataset("teacher")


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """One TFDS data dir for the whole session, so gradlab's builders prepare once."""
  return str(tmp_path_factory.mktemp("tfds"))


def hand_sweep(optimizers=("sgd",), seeds=1) -> pd.DataFrame:
  """A hand-made results frame (tests/test_report.py, tests/test_plots.py):
  4 sigma_w x 3 learning rates per optimizer; diverged in the 4 cells with
  lr * sigma_w^2 >= 0.1, stalled at lr = 1e-3, trained elsewhere."""
  rows = []
  for opt in optimizers:
    for sigma_w in (0.5, 1.0, 2.0, 4.0):
      for lr in (1e-3, 1e-2, 1e-1):
        for seed in range(seeds):
          x = lr * sigma_w**2
          regime = "diverged" if x >= 0.1 else "stalled" if lr < 5e-3 else "trained"
          rows.append(
            {
              "init.sigma_w": sigma_w,
              "optimizer.learning_rate": lr,
              "optimizer.name": opt,
              "seed": seed,
              "run_id": len(rows),
              "regime": regime,
              "final_loss": np.nan if regime == "diverged" else 0.1 + x,
              "test_accuracy": np.nan if regime == "diverged" else 0.5 + x,
            }
          )
  return pd.DataFrame(rows)


def assert_titles_fit(fig, n_titles: int) -> list:
  """Draws `fig` and checks its `n_titles` panel titles: each rendered box lies within
  its own panel's horizontal extent, and no two overlap. Returns the boxes."""
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  titled = [ax for ax in fig.axes if ax.get_title()]
  assert len(titled) == n_titles
  boxes = [ax.title.get_window_extent(renderer) for ax in titled]
  for ax, box in zip(titled, boxes, strict=True):
    panel = ax.get_window_extent(renderer)
    assert box.x0 >= panel.x0 - 2 and box.x1 <= panel.x1 + 2, ax.get_title()
  for i, one in enumerate(boxes):
    for other in boxes[i + 1:]:
      assert not one.overlaps(other)
  return boxes


_CLI_SERVER: dict = {}


def run_cli(module: str, *args: str, cwd: str = REPO, env: dict | None = None,
            timeout: float = 300):
  """`python -m module args...` as a subprocess.CompletedProcess (returncode, stdout,
  stderr), run by a fork server (tests/cli_server.py) that has imported jax, pandas,
  flax and optax once: the child is a fresh process running the module as __main__, with
  its own flags, exit status and output. For commands that stop early (bad input);
  falls back to a plain subprocess where fork is unavailable."""
  import json
  import subprocess

  if not hasattr(os, "fork"):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
  server = _CLI_SERVER.get("proc")
  if server is None or server.poll() is not None:
    server = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "cli_server.py")],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    _CLI_SERVER["proc"] = server
  request = {"module": module, "args": [str(a) for a in args], "cwd": str(cwd),
             "env": env or {}}
  server.stdin.write(json.dumps(request) + "\n")
  server.stdin.flush()
  reply = json.loads(server.stdout.readline())
  return subprocess.CompletedProcess([module, *args], reply["returncode"], reply["stdout"],
                                     reply["stderr"])
