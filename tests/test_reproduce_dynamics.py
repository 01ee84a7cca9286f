"""experiments.reproduce._dynamics and the phase rules of lewkowycz2020 and the AEoS growth
of cohen2022, on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np

from experiments.reproduce import cohen2022, lewkowycz2020
from experiments.reproduce._dynamics import boundary, second_half_median


def test_boundary_is_the_midpoint_where_the_phase_changes_in_any_order():
  assert boundary([1.0, 2.0, 3.0, 4.0], [True, True, False, False]) == 2.5
  assert boundary([4.0, 1.0, 3.0, 2.0], [False, True, False, True]) == 2.5
  # the first change counts: a later lazy-looking point does not move it
  assert boundary([1.0, 2.0, 3.0, 4.0], [True, False, True, False]) == 1.5


def test_boundary_outside_the_grid_is_nan():
  assert math.isnan(boundary([1.0, 2.0], [True, True]))
  assert math.isnan(boundary([1.0, 2.0], [False, False]))


def test_second_half_median_skips_nonfinite_values():
  assert second_half_median([9.0, 9.0, 9.0, 1.0, float("nan"), 3.0, 2.0]) == 2.0
  assert math.isnan(second_half_median([]))


def test_a_loss_rise_above_its_running_minimum_is_a_catapult():
  monotone = np.array([5.0, 1.0, 0.5, 0.4, 0.4])
  catapult = np.array([5.0, 2.0, 2.8, 0.9, 0.3])  # rises 40% above its minimum, below start
  assert lewkowycz2020._phase("trained", lewkowycz2020._rise(monotone)) == "lazy"
  assert lewkowycz2020._phase("trained", lewkowycz2020._rise(catapult)) == "catapult"
  assert lewkowycz2020._phase("diverged", 0.0) == "diverged"
  assert lewkowycz2020._rise(np.array([1.0, np.inf])) == np.inf


def test_aeos_growth_is_raw_sharpness_after_the_ratio_first_reaches_entry():
  ratio = np.array([30.0, 0.5, 0.95, 1.0, 1.0])  # step 0 is skipped (one-gradient P)
  raw = np.array([1.0, 2.0, 4.0, 6.0, 8.0])
  assert cohen2022._growth(ratio, raw) == 2.0
  assert math.isnan(cohen2022._growth(np.array([30.0, 0.5]), np.array([1.0, 1.0])))
