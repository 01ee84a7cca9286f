"""Labels a training run's regime from its trajectory summary.

The rule, applied in this order (thresholds from the config's ``regimes`` section):

1. ``diverged``  -- some step's loss or gradient norm was non-finite (NaN or inf).
   ``first_nonfinite_step`` records the first such step. Exception: a run whose chain
   has a skip guard (``skip_nonfinite``, ``loss_spike``) that skipped steps
   (``skipped_steps > 0``) and whose final loss is finite survived its non-finite steps;
   it is judged by the rules below (the step is still recorded).
2. ``exploding`` -- everything stayed finite, but the gradient norm grew past
   ``explode_factor`` times its step-0 value (``explosion_step`` records the first step
   it did), or the final loss is above the initial loss.
3. ``stalled``   -- finite and not exploding, but the loss fell by less than the fraction
   ``stall_fraction`` below its reference: final_loss > (1 - stall_fraction) * reference,
   with reference = min(initial_loss, chance_loss). ``chance_loss`` is the loss of the
   best constant predictor (`gradlab.losses`: for cross-entropy the entropy of the
   training labels, log(K) for K balanced classes), so a network that starts with huge
   logits and only learns to shrink them back to chance is stalled, not trained.
4. ``trained``   -- the rest.

``initial_loss`` and ``final_loss`` are measured on a fixed slice of the training split
(``train.eval_size`` examples) at init and after the last step, so minibatch noise does
not decide a label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from gradlab.losses import cross_entropy_chance

REGIMES: tuple[str, ...] = ("trained", "stalled", "exploding", "diverged")
REGIME_ORDER: tuple[str, ...] = REGIMES
"""Regimes from best to worst; ties in a cell go to the later (worse) one."""
# A run that neither exploded nor diverged (stable-lr tables, boundary search).
STABLE: tuple[str, ...] = ("trained", "stalled")


def check_regimes(regimes: Iterable[str]) -> None:
  """Raises ValueError naming every label that is not one of `REGIME_ORDER`."""
  unknown = sorted({str(r) for r in regimes if r not in REGIME_ORDER})
  if unknown:
    raise ValueError(f"unknown regime(s) {unknown}; known: {', '.join(REGIME_ORDER)}")


def worst_common_regime(regimes: Iterable[str]) -> str:
  """The most common regime; ties go to the worse one (diverged > exploding > ...)."""
  counts = Counter(regimes)
  check_regimes(counts)
  if not counts:
    raise ValueError("worst_common_regime needs at least one regime")
  return max(counts, key=lambda r: (counts[r], REGIME_ORDER.index(r)))


def summarize(loss: np.ndarray, grad_norm: np.ndarray, explode_factor: float) -> dict[str, Any]:
  """A summary of a per-step trajectory, the same one the training scan tracks.

  `loss[t]` and `grad_norm[t]` belong to step t. initial/final loss are loss[0], loss[-1].
  """
  loss = np.asarray(loss, np.float64)
  grad_norm = np.asarray(grad_norm, np.float64)
  finite = np.isfinite(loss) & np.isfinite(grad_norm)
  bad = np.flatnonzero(~finite)
  g0 = grad_norm[0]
  blown = np.flatnonzero(finite & (grad_norm > explode_factor * g0))
  return {
    "first_nonfinite_step": int(bad[0]) if bad.size else -1,
    "explosion_step": int(blown[0]) if blown.size else -1,
    "initial_grad_norm": float(g0),
    "max_grad_norm": float(grad_norm[finite].max()) if finite.any() else float("nan"),
    "initial_loss": float(loss[0]),
    "final_loss": float(loss[-1]),
  }


# The loss of the best constant predictor for cross-entropy (each loss in
# `gradlab.losses.LOSSES` has its own `chance`).
chance_loss = cross_entropy_chance


def classify(summary: Mapping[str, Any], explode_factor: float, stall_fraction: float,
             chance: float = np.inf) -> np.ndarray:
  """Vectorized labels: every value of `summary` is a scalar or an array of runs.

  Needs first_nonfinite_step, initial_grad_norm, max_grad_norm, initial_loss, final_loss;
  skipped_steps is optional (0); `chance` is `chance_loss` of the task (inf: judge
  against the initial loss alone).
  """
  first_bad = np.asarray(summary["first_nonfinite_step"])
  g0 = np.asarray(summary["initial_grad_norm"], np.float64)
  gmax = np.asarray(summary["max_grad_norm"], np.float64)
  l0 = np.asarray(summary["initial_loss"], np.float64)
  l1 = np.asarray(summary["final_loss"], np.float64)
  with np.errstate(invalid="ignore"):
    skipped = np.asarray(summary.get("skipped_steps", 0))
    survived = (skipped > 0) & np.isfinite(l1)
    diverged = ((first_bad >= 0) & ~survived) | ~np.isfinite(l1) | ~np.isfinite(l0)
    exploding = (gmax > explode_factor * g0) | (l1 > l0)
    stalled = l1 > (1.0 - stall_fraction) * np.minimum(l0, chance)
  labels = np.where(diverged, "diverged",
                    np.where(exploding, "exploding", np.where(stalled, "stalled", "trained")))
  return labels.astype(object)
