"""experiments/reproduce/_rnn.py: the numbers the recurrent reproductions (pascanu2013,
hochreiter1997, bengio1994) read from a sweep, on hand-made inputs and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments.reproduce._rnn import (
  adding_input_variance,
  log_ratio_fit,
  mean_field_log_rate,
  median_ratio_by_radius,
  ratio_crossing,
  regime_grid,
  trained_share,
)


def test_the_crossing_of_a_linear_rnns_ratio_is_exactly_one():
  radii = [0.5, 0.8, 1.3, 2.0]
  ratios = [r ** 19 for r in radii]  # rho^(T-1) at T = 20
  assert ratio_crossing(radii, ratios) == pytest.approx(1.0, rel=1e-9)


def test_the_crossing_interpolates_in_log_and_is_nan_when_there_is_none():
  assert ratio_crossing([1.0, 4.0], [0.5, 2.0]) == pytest.approx(2.0)
  assert math.isnan(ratio_crossing([0.5, 1.0], [1e-3, 0.5]))
  assert math.isnan(ratio_crossing([0.5, 1.0], [2.0, 3.0]))  # above 1 from the start
  assert ratio_crossing([0.5, 1.0, 2.0], [0.0, 0.1, 10.0]) == pytest.approx(math.sqrt(2.0))


def test_the_fit_recovers_a_line_and_says_how_straight_it_is():
  t = [10, 20, 30, 40]
  slope, intercept, r2 = log_ratio_fit(t, [-0.3 * x + 1.0 for x in t])
  assert (slope, intercept, r2) == pytest.approx((-0.3, 1.0, 1.0))
  _, _, bent = log_ratio_fit(t, [-(x / 10.0) ** 3 for x in t])
  assert bent < 0.99
  assert math.isnan(log_ratio_fit([10], [1.0])[0])


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_the_mean_field_rate_of_a_linear_rnn_is_log_rho(rho):
  assert mean_field_log_rate(rho, 0.2, "linear") == pytest.approx(math.log(rho), rel=1e-6)


def test_tanh_contracts_faster_than_log_rho_and_more_with_larger_inputs():
  small = mean_field_log_rate(0.8, 1e-4)
  assert small == pytest.approx(math.log(0.8), abs=2e-3)  # linear-ish regime
  assert mean_field_log_rate(0.8, adding_input_variance(50)) < small - 0.1


def test_the_adding_input_variance_counts_values_and_markers():
  assert adding_input_variance(20) == pytest.approx((1 / 3 + 0.1) / 2)


def test_shares_medians_and_the_regime_grid_read_the_rows():
  rows = pd.DataFrame({
    "init.spectral_radius": [0.5, 0.5, 2.0, 2.0],
    "optimizer.learning_rate": [0.1, 1.0, 0.1, 1.0],
    "regime": ["trained", "catapult", "stalled", "diverged"],
    "grad_h_ratio_init": [1e-3, 3e-3, 10.0, 30.0],
  })
  assert trained_share(rows) == 0.5
  assert median_ratio_by_radius(rows) == ([0.5, 2.0], [2e-3, 20.0])
  xs, ys, grid = regime_grid(rows, "init.spectral_radius", "optimizer.learning_rate")
  assert (xs, ys) == ([0.5, 2.0], [0.1, 1.0])
  assert grid == [["trained", "stalled"], ["catapult", "diverged"]]
  assert np.isnan(trained_share(rows.iloc[:0]))
