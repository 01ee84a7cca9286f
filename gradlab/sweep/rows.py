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
from gradlab.optim import evaluated_with
from gradlab.sweep.grid import Chunk

# Trajectory fields written to the npz files, one row per logged (or sharpness) step.
TRAJECTORY_FIELDS = ("step", "loss", "grad_norm", "grad_norm_by_layer",
                     "update_ratio_by_layer", "param_norm", "update_norm", "finite",
                     "sharpness_step", "sharpness", "preconditioned_sharpness")


def summary_rows(chunk: Chunk, traj: Any, axes: Sequence[str], cfg: mlc.ConfigDict,
                 chance: float, layer_names: Sequence[str]) -> pd.DataFrame:
  """One result row per lane. `chunk` and `traj` (numpy) hold exactly the lanes to
  write: real points only, those of this process."""
  tr = traj.tracker
  first_bad = np.asarray(tr.first_nonfinite_step)
  explosion = np.asarray(tr.explosion_step)
  summary = {
    "first_nonfinite_step": first_bad,
    "initial_grad_norm": np.asarray(tr.initial_grad_norm, np.float64),
    "max_grad_norm": np.asarray(tr.max_grad_norm, np.float64),
    "initial_loss": np.asarray(traj.initial_loss, np.float64),
    "final_loss": np.asarray(traj.final_loss, np.float64),
    "skipped_steps": np.asarray(traj.skipped_steps),
  }
  labels = regimes.classify(summary, cfg.regimes.explode_factor, cfg.regimes.stall_fraction,
                            chance)
  rows: dict[str, Any] = {"run_id": chunk.run_ids, "group": chunk.group,
                          "chunk": int(chunk.run_ids[0]), "process": chunk.process}
  for key in axes:
    rows[key] = [values[key] for values in chunk.axis_values]
  rows.update(chunk.extra)
  rows["seed"] = chunk.seeds
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
  rows["final_grad_norm"] = np.asarray(tr.final_grad_norm, np.float64)
  rows["skipped_steps"] = summary["skipped_steps"]
  rows["eval_params"] = evaluated_with(cfg.optimizer.name)
  rows.update(prediction.columns(traj, chunk.size, cfg, list(layer_names), chunk.hparams))
  return pd.DataFrame(rows)


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
