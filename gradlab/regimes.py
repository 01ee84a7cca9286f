"""Labels a training run's regime from its trajectory summary.

Two events are tracked every step inside the training scan (`gradlab.probes.Tracker`;
`summarize` computes the same from per-step arrays):

- the gradient BASELINE: the geometric mean of the finite gradient norms over the
  baseline window, steps [w0, w1) of `baseline_window` (w1 = min(baseline_steps,
  steps // 2), w0 = w1 // 2: steps 25..49 of a 500-step run). Not the step-0 value: a
  network whose gradient starts vanishingly small (small sigma_w, SkipInit, zero-gamma)
  wakes up within its first few dozen steps and then trains at a gradient scale 10-100x
  its step-0 norm. The window's second half skips that wake-up, and the geometric mean
  is not moved much by one single-step spike inside it (one 100x spike in 25 steps
  raises it 1.2x).
- a SPIKE (``explosion_step``, the first step of either): at a step t >= w1 the
  gradient norm exceeds ``explode_factor`` x the baseline, or the minibatch loss
  exceeds ``spike_factor`` x the loss reference at two consecutive steps t - 1, t >= 1
  (the step reported is t; one step suffices for full-batch training, `spike_steps`,
  whose loss has no batch noise). The reference is the larger of the eval-slice loss at init
  (``initial_loss``) and the step-0 minibatch loss. The loss test has its own factor
  and asks for two steps in a row because the in-scan loss is a minibatch loss: its
  batch-to-batch noise reaches 12% of the initial loss on trained runs of the default
  grid, and more on saturated networks (sigma_w 2 in configs/optimizers.py: a step-0
  minibatch at 2.53 against 3.04 on the eval slice, so a single step-1 minibatch at
  3.29 used to be called a catapult). A catapult (the loss rising for several steps
  before it falls) passes both tests.

The labels, in this order (thresholds from the config's ``regimes`` section; tol =
``loss_tolerance``; reference = min(initial_loss, chance_loss)):

1. ``diverged``  -- some step's loss or gradient norm was non-finite (NaN or inf), or
   the final or initial loss is. ``first_nonfinite_step`` records the first such step.
   Exception: a run whose chain has a skip guard (``skip_nonfinite``, ``loss_spike``)
   that skipped steps (``skipped_steps > 0``) and whose final loss is finite survived its
   non-finite steps; it is judged by the rules below (the step is still recorded).
2. ``exploding`` -- the run ENDS worse than it began: final_loss > (1 + tol) x
   initial_loss; or it did not train (rule 3's test fails) and its gradient norm is
   still above ``explode_factor`` x the baseline at the end: at some step of the final
   window, the last w1 steps (``end_max_grad_norm``: a run still spiking when training
   stops, not only at its very last minibatch).
3. ``stalled``   -- the loss fell by less than the fraction ``stall_fraction`` below
   the reference: final_loss > (1 - stall_fraction) x reference. ``chance_loss`` is the
   loss of the best constant predictor (`gradlab.losses`: for cross-entropy the entropy
   of the training labels, log(K) for K balanced classes), so a network that starts with
   huge logits and only learns to shrink them back to chance is stalled, not trained.
4. ``catapult``  -- would be trained, but spiked on the way (Lewkowycz et al. 2020: the
   loss or gradient rose sharply, then the run recovered to a trained loss). Not only
   early spikes: any spike the loss recovered from, including one in the final window.
5. ``trained``   -- the rest.

``initial_loss`` and ``final_loss`` are measured on a fixed slice of the training split
(``train.eval_size`` examples) at init and after the last step, so minibatch noise does
not decide rules 2-3. ``explosion_step`` and ``explosion_layer`` are reported only for
runs labelled catapult, exploding or diverged (`EVENTFUL`; NaN / '' otherwise); an
exploding run that got worse without a spike has none.

Defaults and why (measured on the default job, 160 runs): loss_tolerance 0.01 -- runs
that sit at chance drift by at most +0.34% (e.g. SGD at sigma_w 0.25, lr 1.93), runs
whose learning rate pushed them above chance end at least +1.3% above their start, so
1% separates them; baseline_steps 50 -- the vanishing-start Adam runs (sigma_w <= 0.54)
wake up by step ~25; spike_factor 1.25 -- twice the largest minibatch-loss excursion
(+12%) of a trained default run, and below the catapult of full-batch gradient descent
on MSE in configs/edge_of_stability.py at lr 1.0 (loss +48% at step 1, then trained:
a one-step catapult, caught because full-batch runs need one step above the factor).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from gradlab.losses import cross_entropy_chance

REGIMES: tuple[str, ...] = ("trained", "catapult", "stalled", "exploding", "diverged")
REGIME_ORDER: tuple[str, ...] = REGIMES
"""Regimes from best to worst; ties in a cell go to the later (worse) one."""
# A run that ended trained, with or without a recovered spike on the way
# (recommendation, stable-lr tables: "the largest learning rate that trains").
TRAINS: tuple[str, ...] = ("trained", "catapult")
# A run that neither exploded nor diverged (stable-lr tables, boundary search).
STABLE: tuple[str, ...] = ("trained", "catapult", "stalled")
# Labels whose runs report explosion_step / explosion_layer (a spike, a blow-up).
EVENTFUL: tuple[str, ...] = ("catapult", "exploding", "diverged")

LOSS_TOLERANCE = 0.01
SPIKE_FACTOR = 1.25
BASELINE_STEPS = 50
MINIBATCH_SPIKE_STEPS = 2


def spike_steps(full_batch: bool) -> int:
  """Consecutive steps the loss must pass spike_factor x its reference to be a spike:
  one for full-batch training (no batch noise: gradient descent on MSE at lr 1.0 in
  configs/edge_of_stability.py goes 1.277 -> 1.894 -> 1.226 and then trains, a one-step
  catapult), two for minibatches."""
  return 1 if full_batch else MINIBATCH_SPIKE_STEPS


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


def baseline_window(steps: int, baseline_steps: int = BASELINE_STEPS) -> tuple[int, int]:
  """(w0, w1): the steps [w0, w1) whose gradient norms make the baseline;
  w1 = max(1, min(baseline_steps, steps // 2)), w0 = w1 // 2."""
  w1 = max(1, min(int(baseline_steps), int(steps) // 2))
  return w1 // 2, w1


def summarize(loss: np.ndarray, grad_norm: np.ndarray, explode_factor: float,
              spike_factor: float = SPIKE_FACTOR, baseline_steps: int = BASELINE_STEPS,
              initial_loss: float = np.nan, full_batch: bool = False) -> dict[str, Any]:
  """A summary of a per-step trajectory, the same one the training scan tracks
  (`gradlab.probes.Tracker`; the module docstring states the rules).

  `loss[t]` and `grad_norm[t]` belong to step t; initial/final loss are loss[0],
  loss[-1] (in a sweep they come from the fixed evaluation slice instead);
  `initial_loss` is the eval-slice loss at init, which raises the loss spike's
  reference above loss[0] where it is larger.
  """
  loss = np.asarray(loss, np.float64)
  grad_norm = np.asarray(grad_norm, np.float64)
  steps = np.arange(loss.size)
  w0, w1 = baseline_window(loss.size, baseline_steps)
  finite = np.isfinite(loss) & np.isfinite(grad_norm)
  bad = np.flatnonzero(~finite)
  in_window = finite & (steps >= w0) & (steps < w1)
  with np.errstate(divide="ignore"):
    logs = np.log(np.maximum(grad_norm[in_window], 1e-30))
  gmax = float(grad_norm[finite].max()) if finite.any() else 0.0
  baseline = float(np.exp(logs.mean())) if logs.size else gmax
  reference = np.fmax(loss[0], initial_loss)
  with np.errstate(invalid="ignore"):
    high = finite & (steps >= 1) & (loss > spike_factor * reference)
    confirmed = high if full_batch else high & np.concatenate([[False], high[:-1]])
    spiked = (finite & (steps >= w1) & (grad_norm > explode_factor * baseline)) | confirmed
  blown = np.flatnonzero(spiked)
  finite_loss = np.where(finite, loss, -np.inf)
  end = finite & (steps >= loss.size - w1)
  return {
    "first_nonfinite_step": int(bad[0]) if bad.size else -1,
    "explosion_step": int(blown[0]) if blown.size else -1,
    "initial_grad_norm": float(grad_norm[0]),
    "baseline_grad_norm": baseline,
    "max_grad_norm": gmax if finite.any() else float("nan"),
    "final_grad_norm": float(grad_norm[-1]),
    "end_max_grad_norm": float(grad_norm[end].max()) if end.any() else float("nan"),
    "max_loss": float(finite_loss.max()) if finite.any() else float("nan"),
    "max_loss_step": int(np.argmax(finite_loss)) if finite.any() else -1,
    "initial_loss": float(loss[0]),
    "final_loss": float(loss[-1]),
  }


def tracker_summary(tracker: Any, initial_loss: Any, final_loss: Any,
                    skipped_steps: Any = 0) -> dict[str, np.ndarray]:
  """The `summarize` dict from a `gradlab.probes.Tracker` (numpy; scalars or one entry
  per run) and the evaluation losses of the same runs."""
  return {
    "first_nonfinite_step": np.asarray(tracker.first_nonfinite_step),
    "explosion_step": np.asarray(tracker.explosion_step),
    "initial_grad_norm": np.asarray(tracker.initial_grad_norm, np.float64),
    "baseline_grad_norm": np.asarray(tracker.baseline_grad_norm, np.float64),
    "max_grad_norm": np.asarray(tracker.max_grad_norm, np.float64),
    "final_grad_norm": np.asarray(tracker.final_grad_norm, np.float64),
    "end_max_grad_norm": np.asarray(tracker.end_max_grad_norm, np.float64),
    "max_loss": np.asarray(tracker.max_loss, np.float64),
    "max_loss_step": np.asarray(tracker.max_loss_step),
    "initial_loss": np.asarray(initial_loss, np.float64),
    "final_loss": np.asarray(final_loss, np.float64),
    "skipped_steps": np.asarray(skipped_steps),
  }


# The loss of the best constant predictor for cross-entropy (each loss in
# `gradlab.losses.LOSSES` has its own `chance`).
chance_loss = cross_entropy_chance


def classify(summary: Mapping[str, Any], explode_factor: float, stall_fraction: float,
             chance: float = np.inf, loss_tolerance: float = LOSS_TOLERANCE) -> np.ndarray:
  """Vectorized labels (the module docstring states the rules): every value of `summary`
  is a scalar or an array of runs.

  Needs first_nonfinite_step, initial_loss, final_loss; optional: skipped_steps (0),
  explosion_step (-1: no spike), baseline_grad_norm and end_max_grad_norm (absent: no
  gradient test at the end). `chance` is `chance_loss` of the task (inf: judge against
  the initial loss alone).
  """
  first_bad = np.asarray(summary["first_nonfinite_step"])
  l0 = np.asarray(summary["initial_loss"], np.float64)
  l1 = np.asarray(summary["final_loss"], np.float64)
  spike = np.asarray(summary.get("explosion_step", -1))
  base = np.asarray(summary.get("baseline_grad_norm", np.nan), np.float64)
  g_end = np.asarray(summary.get("end_max_grad_norm", np.nan), np.float64)
  with np.errstate(invalid="ignore"):
    skipped = np.asarray(summary.get("skipped_steps", 0))
    survived = (skipped > 0) & np.isfinite(l1)
    diverged = ((first_bad >= 0) & ~survived) | ~np.isfinite(l1) | ~np.isfinite(l0)
    stalled = l1 > (1.0 - stall_fraction) * np.minimum(l0, chance)
    exploding = (l1 > (1.0 + loss_tolerance) * l0) | (stalled & (g_end > explode_factor * base))
  labels = np.select([diverged, exploding, stalled, spike >= 0],
                     ["diverged", "exploding", "stalled", "catapult"], "trained")
  return labels.astype(object)


def classify_with(summary: Mapping[str, Any], regimes_cfg: Any, chance: float = np.inf
                  ) -> np.ndarray:
  """`classify` with the thresholds of a config's ``regimes`` section."""
  return classify(summary, float(regimes_cfg.explode_factor),
                  float(regimes_cfg.stall_fraction), chance,
                  float(regimes_cfg.loss_tolerance))


def eventful(labels: Any) -> np.ndarray:
  """Per run, whether its label reports explosion_step / explosion_layer (`EVENTFUL`)."""
  return np.isin(np.asarray(labels, dtype=object), EVENTFUL)
