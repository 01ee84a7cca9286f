"""report.md's "Which optimizer to choose" section (gradlab.report.recommendation)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradlab.report import recommendation, write_report

LRS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
SIGMAS = [0.5, 1.0, 2.0]


def test_widest_trained_range_is_the_longest_consecutive_run_in_decades():
  assert recommendation.widest_trained_range(LRS, [1, 0, 1, 1, 1]) == pytest.approx(2.0)
  assert recommendation.widest_trained_range(LRS[::-1], [1, 1, 1, 0, 1]) == pytest.approx(2.0)
  assert recommendation.widest_trained_range(LRS, [0, 0, 1, 0, 0]) == 0.0
  assert math.isnan(recommendation.widest_trained_range(LRS, [0] * 5))


def _sweep(trains: dict[str, dict[float, list[int]]], replicas: int = 1,
           accuracy: dict[str, float] | None = None) -> pd.DataFrame:
  """Rows of a sigma_w x lr x optimizer sweep: variant -> sigma -> per-lr 1 (trained),
  2 (catapult) or 0 (stalled at sigma < 2, diverged above)."""
  rows = []
  for name, per_sigma in trains.items():
    for sigma in SIGMAS:
      for lr, flag in zip(LRS, per_sigma.get(sigma, [0] * 5), strict=True):
        for r in range(replicas):
          label = {1: "trained", 2: "catapult"}.get(flag) or (
            "stalled" if sigma < 2 else "diverged")
          rows.append({"init.sigma_w": sigma, "optimizer.learning_rate": lr,
                       "optimizer.name": name, "replica": r, "seed": r, "regime": label,
                       "initial_loss": 2.3, "final_loss": 0.5 if flag else 2.3,
                       "test_accuracy": (accuracy or {}).get(name, 0.5) * bool(flag)})
  df = pd.DataFrame(rows)
  return df if replicas > 1 else df.drop(columns="replica")


AXES = ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]


def test_ranks_by_share_that_trains_and_counts_catapults_as_training():
  df = _sweep({"sgd": {1.0: [1, 1, 0, 0, 0]},
               "adam": {0.5: [1, 1, 1, 0, 0], 1.0: [2, 2, 2, 2, 0]}})
  table = recommendation.recommendation_table(df, AXES)
  assert table["variant"].tolist() == ["adam", "sgd"]
  adam = table.iloc[0]
  assert adam["share_trained"] == pytest.approx(7 / 15)
  decades = adam["decades"]
  assert list(decades) == ["sigma_w=0.5", "sigma_w=1", "sigma_w=2"]
  assert decades["sigma_w=0.5"] == pytest.approx(2.0) and decades["sigma_w=1"] == pytest.approx(3.0)
  assert math.isnan(decades["sigma_w=2"])
  assert adam["widest_decades"] == pytest.approx(3.0) and adam["widest_at"] == ["sigma_w=1"]
  assert table.iloc[1]["tied_with"] == []


def test_equal_shares_are_ties_broken_by_the_wider_range():
  df = _sweep({"narrow": {0.5: [1, 0, 1, 0, 1], 1.0: [1, 0, 1, 0, 0]},
               "wide": {1.0: [1, 1, 1, 1, 1]}})
  table = recommendation.recommendation_table(df, AXES)
  assert table["variant"].tolist() == ["wide", "narrow"]
  assert table.iloc[0]["tied_with"] == ["narrow"]
  text = "\n".join(recommendation.section(df, AXES))
  assert "No single choice: wide and narrow are tied" in text


def test_replica_ranges_that_overlap_are_ties():
  df = _sweep({"a": {1.0: [1, 1, 1, 0, 0]}, "b": {1.0: [1, 1, 0, 0, 0]}}, replicas=3)
  # replica 2 of "a" fails at one more learning rate: a's range 13-20% meets b's 13%
  mask = (df["optimizer.name"] == "a") & (df["replica"] == 2) & (
    df["optimizer.learning_rate"] == 1e-2)
  df.loc[mask, "regime"] = "stalled"
  table = recommendation.recommendation_table(df, AXES)
  a = table.set_index("variant").loc["a"]
  assert (a["share_low"], a["share_high"]) == (pytest.approx(2 / 15), pytest.approx(3 / 15))
  assert a["tied_with"] == ["b"]
  text = "\n".join(recommendation.section(df, AXES))
  assert "replica range" in text and "13-20%" in text


def test_report_opens_with_the_recommendation_and_says_no_none(tmp_path):
  df = _sweep({"sgd": {1.0: [1, 1, 0, 0, 0]}, "adam": {1.0: [1, 1, 1, 0, 0]}},
              accuracy={"sgd": 0.9, "adam": 0.8})
  text = Path(write_report(str(tmp_path), df, AXES, {})).read_text()
  assert text.index("## Which optimizer to choose") < text.index("## Axes")
  assert "**Recommended: adam**" in text
  assert "The best test_accuracy was reached by sgd (0.9 against 0.8)" in text
  assert "- **adam** (rank 1) trains in 20% of its cells; its widest learning-rate range " \
         "that trains spans 2.0 decades (at sigma_w=1)" in text
  for word in ("None", "nan", "NaN", "[]"):
    assert word not in text
  no_optimizer = df[df["optimizer.name"] == "adam"].drop(columns="optimizer.name")
  text = Path(write_report(str(tmp_path), no_optimizer, AXES[:2], {})).read_text()
  assert "Which optimizer" not in text


def test_metric_direction_lower_is_better_for_error_rates():
  df = _sweep({"a": {1.0: [1, 1, 0, 0, 0]}, "b": {1.0: [1, 1, 0, 0, 0]}})
  df = df.drop(columns="test_accuracy").assign(test_cer=np.where(
    df["optimizer.name"] == "a", 0.3, 0.1))
  table = recommendation.recommendation_table(df, AXES)
  assert table.iloc[0]["metric"] == "test_cer"
  assert table.set_index("variant").loc["b", "best_metric"] == pytest.approx(0.1)
