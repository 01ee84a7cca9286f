"""Shared by the optimizer-dynamics reproductions (cohen2022, lewkowycz2020): the
full-batch, squared-loss setting of configs/edge_of_stability.py (the synthetic 'teacher'
task, 2048 examples) as a config, and the statistics the claims take from a trace.

Cohen et al. 2021/2022 and Lewkowycz et al. 2020 all study full-batch gradient
descent (or full-batch Adam) on the mean squared error, where the sharpness is the top
eigenvalue of the whole training loss's Hessian: `full_batch_config` builds that run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections as mlc
import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def full_batch_config(optimizer: str, lr: float, *, depth: int, width: int, activation: str,
                      steps: int, log_every: int, every: int, power_iters: int,
                      axes: Mapping[str, Sequence[Any]] | None = None,
                      initial: str = "on") -> mlc.ConfigDict:
  """A full-batch (batch_size 0) MSE run on 'teacher' with an MLP of `depth` hidden
  layers; the sharpness (and, for Adam, the preconditioned sharpness) is measured at
  step 0 (`initial`) and every `every` steps (0: never after step 0)."""
  c = base_config()
  c.model.depth = depth
  c.model.width = width
  c.model.activation = activation
  c.data.name = "teacher"
  c.data.batch_size = 0  # full batch
  c.optimizer.name = optimizer
  c.optimizer.learning_rate = lr
  c.train.loss = "mse"
  c.train.steps = steps
  c.train.log_every = log_every
  c.train.eval_size = 0  # the eval slice is the whole training set
  c.diagnostics.initial = initial
  c.diagnostics.every = every
  c.diagnostics.power_iters = power_iters
  c.sweep.axes = make_axes(dict(axes or {}))
  return c


def second_half_median(values: Sequence[float]) -> float:
  """The median of the finite values in the second half of a trace (NaN if none)."""
  v = np.asarray(values, float)
  v = v[len(v) // 2:]
  v = v[np.isfinite(v)]
  return float(np.median(v)) if len(v) else float("nan")


def boundary(xs: Sequence[float], below: Sequence[bool]) -> float:
  """Where a sorted grid `xs` changes from `below` (True) to not: the midpoint between
  the last True before the first False and that first False. NaN when the grid never
  changes (all True or all False): the boundary lies outside it."""
  xs = np.asarray(xs, float)
  below = np.asarray(below, bool)
  order = np.argsort(xs)
  xs, below = xs[order], below[order]
  first_off = np.flatnonzero(~below)
  if not len(first_off) or first_off[0] == 0:
    return float("nan")
  i = int(first_off[0])
  return float(0.5 * (xs[i - 1] + xs[i]))
