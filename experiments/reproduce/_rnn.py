"""Shared pieces of the recurrent-network reproductions: pascanu2013 (Pascanu, Mikolov &
Bengio, "On the difficulty of training recurrent neural networks", ICML 2013),
hochreiter1997 (Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation
1997) and bengio1994 (Bengio, Simard & Frasconi, "Learning long-term dependencies with
gradient descent is difficult", IEEE TNN 1994).

Numbers only, read from a sweep's result rows: the configs of gradlab's recurrent
models (`gradlab.models.rnn`, the settings of configs/rnn_adding.py and
configs/rnn_gates.py), the trained share of a map, the spectral radius where the
through-time gradient ratio ||dL/dh_1|| / ||dL/dh_T|| at init crosses 1, the slope of its
log against the sequence length T, and the regime grid a figure draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_collections as mlc
import numpy as np
import pandas as pd

from gradlab import theory
from gradlab.config import make_axes
from gradlab.defaults import base_config

RHO = "init.spectral_radius"
LR = "optimizer.learning_rate"
SEQ_LEN = "data.seq_len"
# A run that reached below chance, directly or after a spike it recovered from.
TRAINED = ("trained", "catapult")
# `regimes.stall_fraction` of these reproductions: a run is `trained` only if its final
# loss is below a tenth of chance. gradlab's default (5% below chance) counts an Elman RNN
# on the adding problem at T = 100 that predicts the mean plus a sliver of the most recent
# marked value (loss 0.077 against chance 1/12 = 0.083; first quick run of hochreiter1997)
# as trained. Getting one of the two marked values exactly right and guessing the other
# leaves half of chance, so below a tenth means both were learned (the papers count a
# run as solved on stricter terms still: |error| < 0.04, Hochreiter & Schmidhuber 1997;
# fewer than 1% of test sequences with squared error > 0.04, Pascanu et al.'s code).
STALL_FRACTION = 0.9


def rnn_config(model: str, width: int, seq_len: int, steps: int, optimizer: str = "sgd",
               lr: float = 0.1, clip: float = 0.0, batch_size: int = 32,
               dataset: str = "adding", activation: str = "tanh", log_every: int = 50,
               eval_size: int = 1024, axes: dict[str, Sequence[Any]] | None = None
               ) -> mlc.ConfigDict:
  """A 1-layer recurrent model (`model.name` elman | lstm | gru; orthogonal recurrent
  blocks at `init.spectral_radius`, LeCun input kernels x sigma_w = 1, no biases at init)
  reading a generated sequence task (`gradlab.data.sequences`) with its readout at the
  last step, as configs/rnn_adding.py and configs/rnn_gates.py set them up."""
  c = base_config()
  c.model.name = model
  c.model.activation = activation
  c.model.depth = 1
  c.model.width = width
  c.model.readout = "last"
  c.init.sigma_w = 1.0
  c.init.sigma_b = 0.0
  c.data.name = dataset
  c.data.seq_len = seq_len
  c.data.batch_size = batch_size
  c.optimizer.name = optimizer
  c.optimizer.learning_rate = lr
  c.optimizer.clip = clip
  c.train.steps = steps
  c.train.log_every = min(log_every, steps)
  c.train.eval_size = eval_size
  c.regimes.stall_fraction = STALL_FRACTION
  c.sweep.axes = make_axes(dict(axes or {}))
  return c


def trained_share(rows: pd.DataFrame) -> float:
  """The share of `rows` labelled trained (or catapult: trained after a recovered spike)."""
  return float(rows["regime"].isin(TRAINED).mean()) if len(rows) else float("nan")


def median_ratio_by_radius(rows: pd.DataFrame) -> tuple[list[float], list[float]]:
  """(radii, median ||dL/dh_1|| / ||dL/dh_T|| at init over the runs at each radius)."""
  med = rows.groupby(RHO)["grad_h_ratio_init"].median().sort_index()
  return [float(r) for r in med.index], [float(v) for v in med.to_numpy()]


def ratio_crossing(radii: Sequence[float], ratios: Sequence[float]) -> float:
  """The spectral radius where the ratio first crosses 1 from below, interpolated
  linearly in (log rho, log ratio) between the two radii around it; NaN if it never
  does (or is already above 1 at the smallest radius)."""
  r = np.asarray(radii, float)
  with np.errstate(divide="ignore", invalid="ignore"):
    y = np.log(np.asarray(ratios, float))
  for i in range(1, len(r)):
    if np.isfinite(y[i - 1]) and np.isfinite(y[i]) and y[i - 1] < 0.0 <= y[i]:
      frac = -y[i - 1] / (y[i] - y[i - 1])
      return float(np.exp(np.log(r[i - 1]) + frac * (np.log(r[i]) - np.log(r[i - 1]))))
  return float("nan")


def log_ratio_fit(seq_lens: Sequence[float], log_ratios: Sequence[float]
                  ) -> tuple[float, float, float]:
  """Least-squares line log ratio = slope T + intercept over the finite points:
  (slope, intercept, R^2); NaNs with fewer than two points."""
  t, y = np.asarray(seq_lens, float), np.asarray(log_ratios, float)
  keep = np.isfinite(t) & np.isfinite(y)
  t, y = t[keep], y[keep]
  if len(t) < 2 or np.ptp(t) == 0:
    return float("nan"), float("nan"), float("nan")
  slope, intercept = np.polyfit(t, y, 1)
  resid = y - (slope * t + intercept)
  total = float(np.sum((y - y.mean()) ** 2))
  r2 = 1.0 - float(np.sum(resid ** 2)) / total if total > 0 else float("nan")
  return float(slope), float(intercept), r2


def adding_input_variance(seq_len: float, sigma_w: float = 1.0) -> float:
  """The mean squared input pre-activation x_t W per unit at init on the adding problem
  (`gradlab.data.sequences.adding_sampler`): LeCun kernels N(0, sigma_w^2 / D), D = 2,
  times E|x_t|^2 = E[v^2] + E[m^2] = 1/3 + 2/T (values U[0, 1], two markers in T steps)."""
  return sigma_w ** 2 * (1.0 / 3.0 + 2.0 / float(seq_len)) / 2.0


def mean_field_log_rate(rho: float, input_variance: float, activation: str = "tanh") -> float:
  """log of the per-step contraction of ||dL/dh_t|| in an Elman RNN with an orthogonal
  recurrent matrix at spectral radius rho, by mean field (`gradlab.theory`): the forward
  pre-activations settle at q* = rho^2 E[phi(sqrt(q*) z)^2] + s_in (the length map with
  sigma_w2 = rho^2, sigma_b2 = s_in, the input's variance), and one step back multiplies
  the squared gradient norm by chi_1 = rho^2 E[phi'(sqrt(q*) z)^2]; the log ratio then
  falls by 0.5 log chi_1 per step (log rho for a linear RNN, phi' = 1)."""
  return 0.5 * float(np.log(theory.chi_1(activation, rho ** 2, input_variance)))


def regime_grid(rows: pd.DataFrame, x_key: str, y_key: str
                ) -> tuple[list[float], list[float], list[list[str]]]:
  """(x values, y values, labels[y][x]) of a map: each cell's majority label over its
  runs, ties to the worse (`gradlab.regimes.worst_common_regime`; '' where none ran)."""
  from gradlab.regimes import worst_common_regime

  xs = sorted(float(v) for v in rows[x_key].unique())
  ys = sorted(float(v) for v in rows[y_key].unique())
  grid = []
  for y in ys:
    line = []
    for x in xs:
      cell = rows[np.isclose(rows[x_key], x) & np.isclose(rows[y_key], y)]
      line.append(worst_common_regime(cell["regime"]) if len(cell) else "")
    grid.append(line)
  return xs, ys, grid
