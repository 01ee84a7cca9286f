"""The result-row schema: what one lane of a compiled chunk becomes on disk.

`summary_rows` makes one row per lane (the columns README lists: swept keys, run_id,
group, chunk, process, seed, regime, losses, gradient norms, test metrics, model-probe
columns, `eval_params` and the diagnostic columns of `gradlab.prediction`);
`trajectory_arrays` makes the npz arrays of the same lanes (`TRAJECTORY_FIELDS`, one row
per logged or sharpness step, and `probe_<name>` per model probe). Both read numpy
copies of the lanes this process writes; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_collections as mlc
import numpy as np
import pandas as pd

from gradlab import prediction, regimes
from gradlab.config import flatten
from gradlab.diagnostics import mean_field
from gradlab.models import build_model
from gradlab.optim import SCHEDULES, evaluated_with
from gradlab.sweep.grid import Chunk
from gradlab.train import Run

# Trajectory fields written to the npz files, one row per logged (or sharpness) step.
TRAJECTORY_FIELDS = ("step", "loss", "grad_norm", "grad_norm_by_layer",
                     "update_ratio_by_layer", "param_norm", "update_norm", "finite",
                     "sharpness_step", "sharpness", "preconditioned_sharpness",
                     "sharpness_iters", "sharpness_converged",
                     "preconditioned_sharpness_iters", "preconditioned_sharpness_converged")


def summary_rows(chunk: Chunk, traj: Any, axes: Sequence[str], cfg: mlc.ConfigDict,
                 chance: float, layer_names: Sequence[str], run: Run | None = None
                 ) -> pd.DataFrame:
  """One result row per lane. `chunk` and `traj` (numpy) hold exactly the lanes to
  write: real points only, those of this process. `run` (the group's `Run`) names the
  model's hidden layers and the resolved loss the prediction reads."""
  summary = regimes.tracker_summary(traj.tracker, traj.initial_loss, traj.final_loss,
                                    traj.skipped_steps)
  first_bad = summary["first_nonfinite_step"]
  labels = regimes.classify_with(summary, cfg.regimes, chance)
  # explosion_step / explosion_layer: only where the label has one (regimes.EVENTFUL)
  eventful = regimes.eventful(labels)
  explosion = np.where(eventful, summary["explosion_step"], -1)
  rows: dict[str, Any] = {"run_id": chunk.run_ids, "group": chunk.group,
                          "chunk": int(chunk.run_ids[0]), "process": chunk.process}
  for key in axes:
    rows[key] = [values[key] for values in chunk.axis_values]
  rows.update({k: v for k, v in chunk.extra.items() if k not in axes})  # e.g. replica,
  # optimizer.<key> (the numbers used, where they differ between rows: grid.make_plan)
  rows["seed"] = chunk.seeds
  rows["parameterization"] = str(cfg.model.get("parameterization", "standard"))
  rows["width"] = int(cfg.model.width)  # the model's (static) width
  rows["regime"] = labels
  rows["first_nonfinite_step"] = np.where(first_bad >= 0, first_bad, np.nan)
  rows["explosion_step"] = np.where(explosion >= 0, explosion, np.nan)
  rows["initial_loss"] = summary["initial_loss"]
  rows["final_loss"] = summary["final_loss"]
  rows["chance_loss"] = chance
  rows["test_loss"] = np.asarray(traj.test_loss, np.float64)
  rows["test_accuracy"] = np.asarray(traj.test_accuracy, np.float64)
  for name, value in traj.test_metrics.items():
    rows[f"test_{name}"] = np.asarray(value, np.float64)
  rows.update(model_probe_columns(traj.model_probes))
  rows["initial_grad_norm"] = summary["initial_grad_norm"]
  rows["max_grad_norm"] = summary["max_grad_norm"]
  rows["final_grad_norm"] = summary["final_grad_norm"]
  rows["baseline_grad_norm"] = summary["baseline_grad_norm"]
  rows["end_max_grad_norm"] = summary["end_max_grad_norm"]
  rows["skipped_steps"] = summary["skipped_steps"]
  rows["final_loss_scale"] = np.asarray(traj.loss_scale, np.float64)  # NaN: no loss_scale
  rows["eval_params"] = evaluated_with(cfg.optimizer.name)
  rows.update(prediction_columns(chunk, traj, cfg, chance, layer_names, run))
  if "explosion_layer" in rows:
    rows["explosion_layer"] = np.where(eventful, rows["explosion_layer"], "").astype(object)
  return pd.DataFrame(rows)


def prediction_columns(chunk: Chunk, traj: Any, cfg: mlc.ConfigDict, chance: float,
                       layer_names: Sequence[str], run: Run | None) -> dict[str, Any]:
  """`gradlab.prediction.columns` with its init-time inputs: the model's hidden layers
  (`Model.hidden_layers`, rebuilt from `cfg` without `run`), the schedule's step-0
  learning rate (`initial_lr`: 0 under a warmup from 0), 6 xi_c for plain MLPs
  (`gradlab.diagnostics.mean_field.trainable_depth`; NaN otherwise) and the loss."""
  model = run.model if run is not None else build_model(cfg, 1)
  loss = run.loss if run is not None and run.loss else str(cfg.train.loss)
  hp = {k: np.asarray(v, np.float64) for k, v in chunk.hparams.items()}
  lr = SCHEDULES.get(cfg.optimizer.schedule).build(hp)
  lr0 = np.broadcast_to(np.asarray(lr(0) if callable(lr) else lr, np.float64), (chunk.size,))
  limit = np.full(chunk.size, np.nan)
  if mean_field.skip_reason(flatten(cfg)) is None:
    limit = mean_field.trainable_depth(cfg.model.activation, hp["sigma_w"], hp["sigma_b"],
                                       cfg.init.family, bool(cfg.model.use_bias))
  return prediction.columns(traj, chunk.size, cfg, list(layer_names), chunk.hparams,
                            hidden_layers=model.hidden_layers, lr0=lr0, depth_limit=limit,
                            chance=chance, loss=loss)


def model_probe_columns(model_probes: dict[str, Any]) -> dict[str, np.ndarray]:
  """Per model probe (lanes, n_logs, ...): its value at the first and last logged steps
  and its maximum over steps, each reduced over the probe's own axes by max (layers,
  time steps): columns <name>_init, <name>_final, <name>_max. Non-finite values count
  as the maximum (+inf) so a blown-up probe is never hidden."""
  out = {}
  for name, value in model_probes.items():
    v = np.asarray(value, np.float64)
    v = np.where(np.isnan(v), np.inf, v).reshape(v.shape[0], v.shape[1], -1).max(axis=2)
    out[f"{name}_init"] = v[:, 0] if v.shape[1] else np.full(v.shape[0], np.nan)
    out[f"{name}_final"] = v[:, -1] if v.shape[1] else np.full(v.shape[0], np.nan)
    out[f"{name}_max"] = v.max(axis=1) if v.shape[1] else np.full(v.shape[0], np.nan)
  return out


def trajectory_arrays(chunk: Chunk, traj: Any, layer_names: Sequence[str]
                      ) -> dict[str, np.ndarray]:
  """The npz arrays of the same lanes as `summary_rows` (numpy, real lanes only)."""
  out = {"run_id": chunk.run_ids, "layer_names": np.asarray(layer_names)}
  for name in TRAJECTORY_FIELDS:
    out[name] = np.asarray(getattr(traj, name))
  for name, value in traj.model_probes.items():
    out[f"probe_{name}"] = np.asarray(value)
  return out
