"""LR sensitivity (Wortsman et al. 2023, Sec. 3) on hand-made result tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradlab.diagnostics.ln_depth import loglog_slope
from gradlab.report.sensitivity import lr_sensitivity, report_section, sensitivity_table

LR = "optimizer.learning_rate"
QK = "model.qk_norm"


def test_hand_computed_value_with_divergence_and_loss_above_initial():
  """l_0 = 5. lr -> final loss: 1e-3 -> 3.0, 1e-2 -> 2.0 (best), 1e-1 -> 6.0 (above l_0,
  capped at 5), 1 -> NaN (diverged, counted at 5). Capped: 3, 2, 5, 5; l* = 2;
  E[capped - l*] = (1 + 0 + 3 + 3) / 4 = 1.75."""
  value = lr_sensitivity([1e-3, 1e-2, 1e-1, 1.0], [3.0, 2.0, 6.0, math.nan], [5.0] * 4)
  assert value == pytest.approx(1.75)


def test_seeds_are_averaged_per_learning_rate_first():
  """Two seeds per lr: lr a -> (2, 4) mean 3; lr b -> (1, inf -> l_0 = 5) mean 3; so both
  learning rates tie at 3 and the sensitivity is 0 (not the mean of per-run gaps)."""
  value = lr_sensitivity([0.1, 0.1, 1.0, 1.0], [2.0, 4.0, 1.0, math.inf], [5.0] * 4)
  assert value == pytest.approx(0.0)


def test_flat_curve_has_zero_sensitivity_and_each_run_uses_its_own_initial_loss():
  assert lr_sensitivity([1, 2, 3], [1.5, 1.5, 1.5], [4.0, 4.0, 4.0]) == 0.0
  # l_0 differs per run: the diverged run counts at ITS initial loss (3), l* = 1
  assert lr_sensitivity([1, 2], [1.0, math.nan], [9.0, 3.0]) == pytest.approx(1.0)


def _table():
  rows = []
  for qk, finals in ((False, [2.6, 2.4, 2.9, math.nan]), (True, [2.6, 2.5, 2.5, 2.7])):
    for lr, final in zip([1e-3, 1e-2, 1e-1, 1.0], finals, strict=True):
      rows.append({LR: lr, QK: qk, "final_loss": final, "initial_loss": 5.0,
                   "attn_logit_max_max": 1e4 * lr if not qk else 5.0, "regime": "trained"})
  return pd.DataFrame(rows)


def test_table_per_panel_and_report_lines():
  """Without qk-norm: capped (2.6, 2.4, 2.9, 5.0), l* 2.4 -> (0.2 + 0 + 0.5 + 2.6) / 4 =
  0.825; with: (2.6, 2.5, 2.5, 2.7), l* 2.5 -> (0.1 + 0 + 0 + 0.2) / 4 = 0.075."""
  table = sensitivity_table(_table(), [LR, QK]).set_index("panel")
  assert table.loc["model.qk_norm=False", "lr_sensitivity"] == pytest.approx(0.825)
  assert table.loc["model.qk_norm=True", "lr_sensitivity"] == pytest.approx(0.075)
  assert table.loc["model.qk_norm=False", "diverged"] == 1
  assert table.loc["model.qk_norm=False", "best_lr"] == pytest.approx(1e-2)
  text = "\n".join(report_section(_table(), [LR, QK]))
  assert "| model.qk_norm=False | 0.8250 | 0.01 | 2.4000 | 1 | 4 |" in text
  assert "| model.qk_norm=True | 5 | 5 | 5 | 5 |" in text
  assert report_section(_table(), [QK]) == []  # no learning-rate axis: no section


def test_loglog_slope_recovers_a_power_law():
  depths = np.array([2, 4, 8, 16])
  assert loglog_slope(depths, 3.0 * depths ** -0.5) == pytest.approx(-0.5)
  assert loglog_slope(depths, np.full(4, 7.0)) == pytest.approx(0.0, abs=1e-12)
