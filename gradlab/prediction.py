"""Diagnostic result columns, and a regime predicted from init-time data.

`predict` labels a run from what is known at step 0 and after its first log block (the
first ``train.log_every`` steps: 10 of 500 in the default job), first match wins:

1. **Unstable** (``exploding``; ``diverged`` for an unbounded loss, `UNSTABLE_LABEL`):
   a. the catapult window of Lewkowycz et al. 2020 ("The large learning rate phase of
      deep learning: the catapult mechanism", sec. 2): r = lambda_0 / T(lr_0), the
      step-0 sharpness over the optimizer's stability threshold at the step-0 learning
      rate (`initial_threshold`; for SGD r = lr_0 lambda_0 / 2), above c_max / 2
      (lr_0 lambda_0 > c_max; `CATAPULT_MAX`, per loss). lambda_0 is the top Hessian
      eigenvalue, or for Adam's chains (`ADAM_PRECONDITIONED`) that of P^-1/2 H P^-1/2
      with P = (1 - b1^(t+1)) (sqrt(nu_hat) + eps), against (2 + 2 b1) / ((1 - b1) lr)
      (Cohen et al. 2022, sec. 2). Used only for losses with a known window (mse);
   b. the minibatch loss after the first log block above (1 + `EARLY_RISE`) x the
      initial loss (on the eval slice): the run is already climbing.
2. ``catapult``: 1 < r <= c_max / 2 (inside the window; losses with a known window).
3. ``stalled``:
   a. the gradient EXPLODES through depth at init: the depth gain over the model's
      declared hidden layers (`gradlab.models.Model.hidden_layers`), ||grad first|| /
      ||grad last hidden|| at step 0 (the empirical chi_1 compounded over depth,
      Schoenholz et al. 2017) above ``regimes.explode_gain``. In the chaotic phase the
      outputs start saturated far above chance and the run ends above it (the labels
      judge the END: `gradlab.regimes`), not higher than it began;
   b. only for optimizers whose step scales with the gradient (`SCALE_DEPENDENT`: sgd,
      momentum, nesterov; Adam-like and sign-based steps are invariant to a small
      gradient, and on the default grid Adam trains at sigma_w 0.25 where the depth gain
      is 2e-6): the gradient VANISHES through depth (gain below ``regimes.vanish_gain``),
      or a plain MLP is deeper than the mean-field trainable depth 6 xi_c at the run's
      sigma_w, sigma_b (Schoenholz et al. 2017, sec. 6; `depth_limit`), or the
      first-order progress the first step promises over
      the run, steps x ||g_0|| ||u_0|| (>= steps x |<g_0, u_0>|, = steps x lr ||g_0||^2
      for SGD), is below `PROGRESS_MARGIN` x ``regimes.stall_fraction`` x the reference
      loss min(initial, chance): the learning rate is too small to move.
4. ``trained`` otherwise.

NaN signals never fire: a family that declares no hidden layers, or
``train.layer_probes`` off, leaves the gain NaN (never 1); no step-0 sharpness
(``diagnostics.initial`` off and ``diagnostics.every`` 0) leaves r NaN. Measured on the
default job (README, "Predicted vs observed regime"): on cross-entropy the step-0 r
does not separate the regimes (runs with r from 1e-3 to 1e8 train, stall and explode
alike: tanh saturation and the softmax flatten the loss as the logits grow, the
mechanism Lewkowycz et al. sec. 3.2 describe), so it is recorded (`sharpness_ratio`)
but not used there. Labels are `gradlab.regimes`' vocabulary;
`gradlab.report.prediction.report_section` states how often they match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from gradlab import theory

# Chains whose state is Adam's second moment used as Adam's preconditioner: their
# sharpness is compared preconditioned. Excluded although their optax state is a
# ScaleByAdamState: adamax (nu is an infinity norm), radam (rectified: unpreconditioned
# early steps), yogi (additive nu), lamb (layer-wise trust ratio), adopt (normalizes by
# the previous nu), muon (orthogonalized matrix updates).
ADAM_PRECONDITIONED: tuple[str, ...] = ("adam", "adamw", "nadam", "nadamw", "gadam")
PRECONDITIONED = ADAM_PRECONDITIONED  # the name gradlab.diagnostics.run_summary reads
_BETA_KEY = {"momentum": "momentum", "nesterov": "momentum", **{
  n: "b1" for n in ADAM_PRECONDITIONED}}
_THRESHOLD_OF = {n: "adam" for n in ADAM_PRECONDITIONED}
# Optimizers whose step is proportional to the gradient (a vanishing gradient stalls them).
SCALE_DEPENDENT: tuple[str, ...] = ("sgd", "momentum", "nesterov", "schedule_free_sgd")

# c_max of the catapult window lr lambda_0 in (2, c_max), per loss: Lewkowycz et al. 2020
# (sec. 2, wide networks, squared loss) derive c_max = 4. Losses not listed (cross-entropy:
# no fixed upper end, sec. 3.2) do not use the window.
CATAPULT_MAX: dict[str, float] = {"mse": 4.0, "squared_error": 4.0}
# The unstable label: a squared loss is unbounded (the iterates blow up: diverged); on a
# cross-entropy net of saturating units the loss stays finite and ends worse (exploding).
UNSTABLE_LABEL: dict[str, str] = {"mse": "diverged", "squared_error": "diverged"}
DEFAULT_UNSTABLE = "exploding"
# stalled when steps ||g_0|| ||u_0|| < PROGRESS_MARGIN x stall_fraction x reference loss:
# the first-order promise overstates what a run gets (the gradient turns), by about 10x
# on the default grid's SGD runs (stalled at promises up to 7, trained from 2 up).
PROGRESS_MARGIN = 10.0
# unstable when the minibatch loss at step log_every exceeds (1 + EARLY_RISE) x the
# initial loss (eval slice). 10%: measured against the step-0 MINIBATCH loss instead, nets
# that start saturated (sigma_w >= 2, loss 3-11) rose by 6-34% from batch noise alone at
# lr 1e-4 (configs/optimizers.py), and 5% flagged those still.
EARLY_RISE = 0.1


class Signals(NamedTuple):
  """Per-run inputs of `predict` (arrays of runs; NaN: not available)."""

  sharpness_ratio: np.ndarray   # lambda_0 / threshold(lr_0)
  depth_gain: np.ndarray        # ||g first hidden|| / ||g last hidden||
  depth_over_limit: np.ndarray  # hidden layers / (6 xi_c) (plain MLPs)
  progress: np.ndarray          # steps ||g_0|| ||u_0|| / (stall_fraction x reference loss)
  early_loss_ratio: np.ndarray  # minibatch loss at step log_every / initial (eval) loss


class Rule(NamedTuple):
  """The thresholds `predict` applies (see the module docstring)."""

  catapult_max: float = np.nan  # NaN: the loss has no known window (sharpness unused)
  unstable: str = DEFAULT_UNSTABLE
  vanish_gain: float = 1e-2
  explode_gain: float = 1e2
  progress_margin: float = PROGRESS_MARGIN
  early_rise: float = EARLY_RISE
  scale_dependent: bool = True  # the optimizer's step scales with the gradient


DEFAULT_RULE = Rule()


def depth_gain(grad_norm_by_layer0: np.ndarray, hidden: Sequence[int]) -> np.ndarray:
  """||g_first|| / ||g_last|| over the hidden layers at column indices `hidden` of the
  step-0 per-layer gradient norms (R, L); NaN where fewer than two are declared or the
  per-layer norms were not recorded (``train.layer_probes`` off: L = 0)."""
  g = np.asarray(grad_norm_by_layer0, np.float64)
  hidden = list(hidden)
  if len(hidden) < 2 or g.shape[-1] <= max(hidden):
    return np.full(g.shape[0], np.nan)
  with np.errstate(divide="ignore", invalid="ignore"):
    return g[:, hidden[0]] / g[:, hidden[-1]]


def initial_threshold(optimizer: str, hparams: Mapping[str, np.ndarray],
                      lr: np.ndarray | None = None) -> np.ndarray:
  """Per run, the optimizer's sharpness threshold at learning rate `lr` (default
  hparams['learning_rate']; pass the step-0 rate of a schedule) and its momentum or b1
  (`theory.sharpness_threshold`); inf where lr = 0; NaN for an optimizer without one."""
  lr = np.asarray(hparams["learning_rate"] if lr is None else lr, np.float64)
  name = _THRESHOLD_OF.get(optimizer, optimizer)
  if name not in theory.SHARPNESS_THRESHOLDS:
    return np.full(lr.shape, np.nan)
  beta = (np.asarray(hparams[_BETA_KEY[optimizer]], np.float64) if optimizer in _BETA_KEY
          else np.zeros_like(lr))
  with np.errstate(divide="ignore"):
    return np.array([theory.sharpness_threshold(name, a, float(b)) if a > 0 else np.inf
                     for a, b in zip(lr, beta, strict=True)], np.float64)


def predict(signals: Signals, rule: Rule = DEFAULT_RULE) -> np.ndarray:
  """Vectorized predicted labels (the module docstring's rule, first match wins)."""
  s = signals
  ratio = (np.asarray(s.sharpness_ratio, np.float64) if np.isfinite(rule.catapult_max)
           else np.full(np.shape(s.sharpness_ratio), np.nan))
  with np.errstate(invalid="ignore"):
    unstable = (ratio > rule.catapult_max / 2.0) | (s.early_loss_ratio > 1.0 + rule.early_rise)
    slow = ((s.depth_gain < rule.vanish_gain) | (s.depth_over_limit > 1.0)
            | (s.progress < rule.progress_margin))
    stalled = (s.depth_gain > rule.explode_gain) | (slow & rule.scale_dependent)
    out = np.select([unstable, ratio > 1.0, stalled], [rule.unstable, "catapult", "stalled"],
                    default="trained")
  return out.astype(object)


def _first_and_last(values: np.ndarray, steps: np.ndarray, n: int
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Per run, the value at the first measurement and at the last one after step 0
  (NaN where there is none)."""
  v = np.asarray(values, np.float64)[:n]
  if not v.shape[1]:
    return np.full(n, np.nan), np.full(n, np.nan)
  later = np.asarray(steps)[:n, -1] > 0
  return v[:, 0], np.where(later, v[:, -1], np.nan)


def _sharpness_columns(traj: Any, n: int, opt: str) -> dict[str, np.ndarray]:
  """initial_/final_ sharpness (the compared one: preconditioned for Adam's chains), its
  power iterations and convergence flags."""
  prefix = "preconditioned_sharpness" if opt in ADAM_PRECONDITIONED else "sharpness"
  steps = getattr(traj, "sharpness_step", np.zeros((n, 0)))
  out = {}
  for suffix, column in (("", "sharpness"), ("_iters", "sharpness_iters"),
                         ("_converged", "sharpness_converged")):
    field = getattr(traj, prefix + suffix, None)
    if field is None:  # a trajectory from before issue 14
      field = np.full(np.shape(getattr(traj, prefix))[:2], np.nan)
    first, last = _first_and_last(np.asarray(field, np.float64), steps, n)
    out[f"initial_{column}"], out[f"final_{column}"] = first, last
  return out


def columns(traj: Any, n: int, cfg: Any, layer_names: Sequence[str],
            hparams: Mapping[str, np.ndarray], hidden_layers: Sequence[str] = (),
            lr0: np.ndarray | None = None, depth_limit: np.ndarray | None = None,
            chance: float = np.inf, loss: str = "") -> dict[str, Any]:
  """Result columns from a chunk's trajectory (numpy, first `n` lanes are real):
  explosion_layer, first_nonfinite_layer (layer names, '' where none);
  initial_sharpness, final_sharpness (the compared sharpness at step 0 and at the last
  measurement after it; NaN when not measured), initial_/final_sharpness_iters and
  _converged (power iterations used; whether they reached ``diagnostics.power_tol``);
  initial_lr (the schedule's step-0 rate, `lr0`), sharpness_threshold (at initial_lr),
  sharpness_ratio, update_ratio, depth_gain (over `hidden_layers`), depth_limit
  (6 xi_c, NaN but for plain MLPs), progress, early_loss_ratio and predicted_regime
  (`predict` under `rule_for`; `loss`, the resolved loss name, picks the catapult
  window)."""
  names = np.asarray([*layer_names, ""], dtype=object)  # index -1 -> ''
  onset = traj.onset
  opt = cfg.optimizer.name
  sharp = _sharpness_columns(traj, n, opt)
  hp = {k: np.asarray(v)[:n] for k, v in hparams.items()}
  lr0 = np.asarray(hp["learning_rate"] if lr0 is None else lr0, np.float64)[:n]
  threshold = initial_threshold(opt, hp, lr0)
  index = {name: i for i, name in enumerate(layer_names)}
  gain = depth_gain(np.asarray(traj.grad_norm_by_layer, np.float64)[:n, 0, :],
                    [index[h] for h in hidden_layers if h in index])
  g0 = np.asarray(traj.grad_norm, np.float64)[:n, 0]
  u0 = np.asarray(traj.update_norm, np.float64)[:n, 0]
  w0 = np.asarray(traj.param_norm, np.float64)[:n, 0]
  reference = np.minimum(np.asarray(traj.initial_loss, np.float64)[:n], chance)
  limit = np.full(n, np.nan) if depth_limit is None else np.asarray(depth_limit)[:n]
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = np.where(lr0 > 0, sharp["initial_sharpness"] / threshold, 0.0)
    progress = (int(cfg.train.steps) * g0 * u0
                / (float(cfg.regimes.stall_fraction) * reference))
    loss_log = np.asarray(traj.loss, np.float64)[:n]
    initial = np.asarray(traj.initial_loss, np.float64)[:n]  # the eval slice, not noisy
    early = loss_log[:, 1] / initial if loss_log.shape[1] > 1 else np.full(n, np.nan)
    signals = Signals(ratio, gain, len(hidden_layers) / limit, progress, early)
    update_ratio = u0 / w0
  return {
    "explosion_layer": names[np.asarray(onset.onset_layer)[:n]],
    "first_nonfinite_layer": names[np.asarray(onset.nonfinite_layer)[:n]],
    **sharp,
    "initial_lr": lr0,
    "sharpness_threshold": threshold,
    "sharpness_ratio": ratio,
    "update_ratio": update_ratio,
    "depth_gain": gain,
    "depth_limit": limit,
    "progress": progress,
    "early_loss_ratio": early,
    "predicted_regime": predict(signals, rule_for(opt, loss, cfg.regimes)),
  }


def rule_for(optimizer: str, loss: str, regimes_cfg: Any) -> Rule:
  """The `Rule` of one group: the loss's catapult window and unstable label, the
  config's gain thresholds, whether the optimizer's step scales with the gradient."""
  return Rule(CATAPULT_MAX.get(loss, np.nan), UNSTABLE_LABEL.get(loss, DEFAULT_UNSTABLE),
              float(regimes_cfg.vanish_gain), float(regimes_cfg.explode_gain),
              scale_dependent=optimizer in SCALE_DEPENDENT)


def signals_from_rows(df: Any, hidden_layers: int) -> Signals:
  """The `Signals` of saved result rows (a DataFrame of `columns`' output), to predict
  again under another `Rule`; `hidden_layers` is the model's count."""
  with np.errstate(divide="ignore"):
    over = hidden_layers / np.asarray(df["depth_limit"], np.float64)
  return Signals(*(np.asarray(df[c], np.float64) for c in ("sharpness_ratio", "depth_gain")),
                 over, np.asarray(df["progress"], np.float64),
                 np.asarray(df["early_loss_ratio"], np.float64))
