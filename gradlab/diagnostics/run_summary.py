"""One run's diagnostics as JSON-ready numbers, beside what the theory predicts.

The computing half of the one-run dashboard (`gradlab.diagnose` trains the run and
calls these; `gradlab.viz.dashboard` draws the result):

- `init_signal`: signal propagation of an MLP at init (`gradlab.diagnostics.signal`)
  next to the mean-field theory (`gradlab.theory`): q^l, c^l beside
  `theory.mean_field_trajectory` from the inputs' own q and c (Poole et al. 2016);
  g^l = E[(dL/dh^l)^2] and the measured chi_1 = g^l / g^{l+1} (depth - 1 values), beside
  chi_1 at q* (Schoenholz et al. 2017, sec. 5) and chi_1 at each layer's q^l; singular
  values of the input-output Jacobian (to the logits and to the last hidden
  pre-activation; Pennington et al. 2017);
- `threshold_reference`: the sharpness threshold of the optimizer (Cohen et al. 2021,
  2022: `theory.sharpness_threshold`; Adam's preconditioned sharpness for adam and
  adamw);
- `summarize_run`: loss, gradient norms, per-layer update ratios, the sharpness trace
  against its threshold, the explosion onset and the first non-finite step and layer;
- `jsonable`: nested dicts of plain numbers, non-finite numbers as JSON null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from gradlab import prediction, regimes, theory
from gradlab.config import flatten
from gradlab.diagnostics import mean_field, signal

THRESHOLD_FORMULA = {"sgd": "2/lr", "gd": "2/lr", "momentum": "(2+2 beta)/lr",
                     "heavy_ball": "(2+2 beta)/lr", "nesterov": "(2+2 beta)/((1+2 beta) lr)",
                     "adam": "(2+2 b1)/((1-b1) lr)", "adamw": "(2+2 b1)/((1-b1) lr)"}


def threshold_reference(optimizer: str, learning_rate: float, hparams: Mapping[str, float]
                        ) -> dict[str, Any]:
  """The sharpness threshold of `optimizer` at its traced `hparams` (by short name:
  learning_rate, momentum, b1; `theory.sharpness_threshold`: 2/lr for sgd, (2+2 beta)/lr
  for momentum, Adam's (2+2 b1)/((1-b1) lr) on the preconditioned sharpness), the trace
  it is compared with, and the formula; threshold NaN for optimizers without one."""
  hp = {k: np.array([v]) for k, v in hparams.items()}
  threshold = float(prediction.initial_threshold(optimizer, hp)[0])
  return {"optimizer": optimizer, "learning_rate": float(learning_rate),
          "threshold": threshold, "formula": THRESHOLD_FORMULA.get(optimizer, ""),
          "compared": ("preconditioned_sharpness" if optimizer in prediction.PRECONDITIONED
                       else "sharpness"),
          "source": (theory.SHARPNESS_THRESHOLDS.get(optimizer).source
                     if optimizer in theory.SHARPNESS_THRESHOLDS else "")}


def init_signal(cfg: mlc.ConfigDict, params: Any, x: np.ndarray, key: jax.Array
                ) -> dict[str, Any]:
  """Init-time signal propagation of an MLP's `params` on inputs `x`, with the
  mean-field predictions where the theory applies (`mean_field.skip_reason`)."""
  act = cfg.model.activation
  x_BxF = jnp.asarray(x.reshape(x.shape[0], -1), jnp.float32)
  xb_BxF = jnp.roll(x_BxF, 1, axis=0)
  stats = jax.jit(signal.signal_stats, static_argnums=1)(params, act, x_BxF, xb_BxF)
  q_in = float(jnp.mean(x_BxF * x_BxF))
  c_in = float(jnp.mean(x_BxF * xb_BxF) / q_in)
  chi = np.asarray(stats.chi_1, np.float64)
  out: dict[str, Any] = {
    "layers": [f"dense_{i}" for i in range(len(stats.q))], "input_q": q_in, "input_c": c_in,
    "q": stats.q, "c": stats.c, "grad_sq": stats.grad_sq, "chi_1_measured": chi,
    "chi_1_measured_mean": float(np.exp(np.mean(np.log(chi)))) if chi.size else None,
    "jacobian_singular_values": {
      to: signal.jacobian_singular_values(params, act, x_BxF[0], key, to=to)
      for to in ("readout", "hidden")},
  }
  reason = mean_field.skip_reason(flatten(cfg))
  if reason is not None:
    return {**out, "mean_field": None, "mean_field_skipped": reason, "q_theory": None,
            "c_theory": None, "chi_1_theory": None, "chi_1_theory_by_layer": None}
  return {**out, **_mean_field_prediction(cfg, len(stats.q), q_in, c_in)}


def _mean_field_prediction(cfg: mlc.ConfigDict, depth: int, q_in: float, c_in: float
                           ) -> dict[str, Any]:
  """The mean-field q^l, c^l, chi_1 of the config's scales, from the inputs' q and c."""
  act = cfg.model.activation
  sw2, sb2 = mean_field.mean_field_variances(float(cfg.init.sigma_w), float(cfg.init.sigma_b),
                                             cfg.init.family, bool(cfg.model.use_bias))
  q_th, c_th = theory.mean_field_trajectory(act, float(sw2), float(sb2), depth, q_in, c_in)
  return {"q_theory": q_th, "c_theory": c_th,
          "chi_1_theory": float(theory.chi_1(act, sw2, sb2)),
          "chi_1_theory_by_layer": theory.chi_1(act, sw2, sb2, q_th[:-1]),
          "mean_field": {
            "sigma_w2": float(sw2), "sigma_b2": float(sb2),
            "q_star": float(theory.q_star(act, sw2, sb2)),
            "xi_c": float(theory.xi_c(act, sw2, sb2)),
            "trainable_depth": float(theory.trainable_depth(act, sw2, sb2)),
            "critical_sigma_w": mean_field.critical_sigma_w(act, float(cfg.init.sigma_b),
                                                            cfg.init.family,
                                                            bool(cfg.model.use_bias))}}


def _layer(names: list[str], index: Any) -> str | None:
  i = int(index)
  return names[i] if 0 <= i < len(names) else None


def _step(value: Any) -> int | None:
  return int(value) if int(value) >= 0 else None


def summarize_run(cfg: mlc.ConfigDict, traj: Any, layer_names: list[str], chance: float,
                  reference: Mapping[str, Any]) -> dict[str, Any]:
  """The run's summary, curves, sharpness and onset sections of the diagnostics, from its
  `gradlab.train.Trajectory` (on the host) and its `threshold_reference`."""
  tr, on = traj.tracker, traj.onset
  summary = {k: v.item() for k, v in regimes.tracker_summary(
    tr, traj.initial_loss, traj.final_loss, traj.skipped_steps).items()}
  regime = str(regimes.classify_with(summary, cfg.regimes, chance))
  eventful = regime in regimes.EVENTFUL  # explosion step / layer only for these labels
  ref = dict(reference)
  compared = np.asarray(getattr(traj, ref["compared"]), np.float64)
  ratio = compared / ref["threshold"] if np.isfinite(ref["threshold"]) else compared * np.nan
  return {
    "summary": {**summary, "regime": regime, "chance_loss": chance,
                "test_loss": float(traj.test_loss), "test_accuracy": float(traj.test_accuracy),
                "final_grad_norm": float(tr.final_grad_norm)},
    "curves": {"layer_names": layer_names,
               **{k: np.asarray(getattr(traj, k)) for k in (
                 "step", "loss", "grad_norm", "grad_norm_by_layer", "update_ratio_by_layer",
                 "param_norm", "update_norm", "finite")}},
    "sharpness": {**ref, "step": np.asarray(traj.sharpness_step),
                  "sharpness": np.asarray(traj.sharpness),
                  "preconditioned_sharpness": np.asarray(traj.preconditioned_sharpness),
                  "ratio_to_threshold": ratio,
                  "max_ratio_to_threshold": float(np.nanmax(ratio)) if ratio.size
                  and np.any(np.isfinite(ratio)) else None},
    "onset": {"explosion_step": _step(on.onset_step) if eventful else None,
              "explosion_layer": _layer(layer_names, on.onset_layer) if eventful else None,
              "explosion_ratio": float(on.onset_ratio) if eventful else None,
              "first_nonfinite_step": _step(on.nonfinite_step),
              "first_nonfinite_layer": _layer(layer_names, on.nonfinite_layer),
              "spike_step": _step(tr.explosion_step),
              "loss_or_grad_nonfinite_step": _step(tr.first_nonfinite_step)},
  }


def jsonable(obj: Any) -> Any:
  """Nested dicts/lists of plain Python numbers; non-finite floats become None."""
  if isinstance(obj, Mapping):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, jax.Array | np.ndarray | list | tuple):
    arr = np.asarray(obj) if not isinstance(obj, list | tuple) else None
    if arr is not None and arr.ndim == 0:
      return jsonable(arr.item())
    return [jsonable(v) for v in (arr if arr is not None else obj)]
  if isinstance(obj, bool | np.bool_):
    return bool(obj)
  if isinstance(obj, int | np.integer):
    return int(obj)
  if isinstance(obj, float | np.floating):
    return float(obj) if np.isfinite(obj) else None
  return obj
