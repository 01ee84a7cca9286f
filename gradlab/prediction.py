"""Diagnostic result columns, and a regime predicted before training from init-time data.

`predict` labels a run from what is known at step 0:

1. ``exploding`` if the initial sharpness exceeds the optimizer's stability threshold
   at its learning rate (Cohen et al. 2021, 2022; `gradlab.theory.sharpness_threshold`:
   2/lr for gradient descent, (2+2*beta)/lr heavy ball, Adam's preconditioned
   sharpness against (2+2*beta1)/((1-beta1)*lr)); only where sharpness was measured
   (``diagnostics.every > 0``) and the optimizer has a known threshold;
2. ``exploding`` if the gradient grows through depth at init: the depth gain
   ||grad dense_0|| / ||grad last hidden layer|| (the empirical chi_1 compounded over the
   layers, Schoenholz et al. 2017) exceeds ``regimes.explode_gain``;
3. ``stalled`` if it vanishes: the depth gain is below ``regimes.vanish_gain``;
4. ``trained`` otherwise.

`gradlab.report.prediction.report_section` states how often the prediction matches the
observed regime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradlab import theory

# The Hessian whose sharpness is compared: preconditioned for the Adam family.
PRECONDITIONED = ("adam", "adamw")
_BETA_KEY = {"momentum": "momentum", "nesterov": "momentum", "adam": "b1", "adamw": "b1"}


def depth_gain(grad_norm_by_layer0: np.ndarray, n_hidden: int) -> np.ndarray:
  """||g_0|| / ||g_{n_hidden-1}|| per run from step-0 per-layer gradient norms (R, L);
  1 where there are fewer than two hidden layers."""
  g = np.asarray(grad_norm_by_layer0, np.float64)
  if n_hidden < 2 or g.shape[-1] < n_hidden:
    return np.ones(g.shape[0])
  with np.errstate(divide="ignore", invalid="ignore"):
    return g[:, 0] / g[:, n_hidden - 1]


def initial_threshold(optimizer: str, hparams: Mapping[str, np.ndarray]) -> np.ndarray:
  """Per run, the optimizer's sharpness threshold at its learning rate (and momentum or
  b1; `theory.sharpness_threshold`); NaN for an optimizer without a known threshold."""
  lr = np.asarray(hparams["learning_rate"], np.float64)
  if optimizer not in theory.SHARPNESS_THRESHOLDS:
    return np.full(lr.shape, np.nan)
  beta = np.asarray(hparams[_BETA_KEY[optimizer]], np.float64) if optimizer in _BETA_KEY \
    else np.zeros_like(lr)
  return np.array([theory.sharpness_threshold(optimizer, a, float(b))
                   for a, b in zip(lr, beta, strict=True)], np.float64)


def predict(gain: np.ndarray, sharpness0: np.ndarray, threshold: np.ndarray,
            vanish_gain: float, explode_gain: float) -> np.ndarray:
  """Vectorized predicted labels (see the module docstring for the rule)."""
  with np.errstate(invalid="ignore"):
    too_sharp = np.isfinite(sharpness0) & np.isfinite(threshold) & (sharpness0 > threshold)
    out = np.where(too_sharp | (gain > explode_gain), "exploding",
                   np.where(gain < vanish_gain, "stalled", "trained"))
  return out.astype(object)


def columns(traj: Any, n: int, cfg: Any, layer_names: Sequence[str],
            hparams: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Result columns from a chunk's trajectory (numpy, first `n` lanes are real):
  explosion_layer, first_nonfinite_layer (layer names, '' where none),
  initial_sharpness, final_sharpness (NaN when not measured), depth_gain and
  predicted_regime."""
  names = np.asarray([*layer_names, ""], dtype=object)  # index -1 -> ''
  onset = traj.onset
  opt = cfg.optimizer.name
  sharp = np.asarray(traj.preconditioned_sharpness if opt in PRECONDITIONED
                     else traj.sharpness, np.float64)[:n]
  s0 = sharp[:, 0] if sharp.shape[1] else np.full(n, np.nan)
  s1 = sharp[:, -1] if sharp.shape[1] else np.full(n, np.nan)
  g0 = np.asarray(traj.grad_norm_by_layer, np.float64)[:n, 0, :]
  gain = depth_gain(g0, len(layer_names) - 1)
  hp = {k: np.asarray(v)[:n] for k, v in hparams.items()}
  threshold = initial_threshold(opt, hp)
  return {
    "explosion_layer": names[np.asarray(onset.onset_layer)[:n]],
    "first_nonfinite_layer": names[np.asarray(onset.nonfinite_layer)[:n]],
    "initial_sharpness": s0,
    "final_sharpness": s1,
    "sharpness_threshold": threshold,
    "depth_gain": gain,
    "predicted_regime": predict(gain, s0, threshold, cfg.regimes.vanish_gain,
                                cfg.regimes.explode_gain),
  }
