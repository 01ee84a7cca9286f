"""One run with every diagnostic on: what it measured, beside what the theory predicts.

    diag = diagnose(cfg, dataset)          # JSON-ready dict (written as diagnostics.json)
    gradlab.viz.dashboard.write_figures(diag, workdir)  # dashboard.png, per_layer.png, ...

`diagnose` trains the config's single point once (`gradlab.train.train_one`, with
``train.layer_probes`` on and ``diagnostics.every`` on) and, at init, re-creates the
exact parameters `run()` starts from (the first of ``jax.random.split(PRNGKey(seed), 3)``
into ``model.init``, then `gradlab.models.scale_params`) to measure signal propagation
next to the mean-field theory (`gradlab.diagnostics.run_summary.init_signal`); from the
run it keeps the loss curve, global and per-layer gradient norms, per-layer update
ratios, the sharpness trace with its optimizer's threshold, the explosion onset and the
first non-finite step and layer (`gradlab.diagnostics.run_summary.summarize_run`).

Keys of the dict (non-finite numbers are JSON null): config, notes, point, summary,
curves, sharpness, onset, init, and grad_histograms (per-layer histograms of the gradient
entries at the logged steps, `grad_histograms`). See docs/diagnostics.md for each field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from gradlab import probes
from gradlab.config import copy_config, flatten, make_axes, to_dict
from gradlab.diagnostics import mean_field
from gradlab.diagnostics.run_summary import (
  init_signal,
  jsonable,
  summarize_run,
  threshold_reference,
)
from gradlab.losses import bound_loss, chance_loss
from gradlab.models import build_model
from gradlab.optim import OPTIMIZER_INFO, resolve_point
from gradlab.sweep.grid import make_plan
from gradlab.train import Trajectory, hparams_from_config, init_variables, train_one

SIGNAL_EXAMPLES = 256  # inputs the init-time signal statistics average over


def prepare_config(cfg: mlc.ConfigDict) -> tuple[mlc.ConfigDict, list[str]]:
  """A copy of `cfg` for one diagnostic run, and notes on what was changed: sweep axes
  dropped (the run is the config's own point), ``train.layer_probes`` and
  ``diagnostics.grad_histograms`` on, ``diagnostics.every`` set to ``train.log_every``
  when 0, unset optimizer numbers
  resolved (`gradlab.optim.resolve_point`). Validated like a sweep point (one
  ConfigError naming the bad key)."""
  out, notes = copy_config(cfg), []
  if len(out.sweep.axes):
    notes.append("sweep axes ignored (this is the config's single point): "
                 + ", ".join(out.sweep.axes))
    out.sweep.axes = make_axes({})
  if not out.train.layer_probes:
    out.train.layer_probes = True
    notes.append("train.layer_probes turned on")
  if not out.diagnostics.grad_histograms:
    out.diagnostics.grad_histograms = True
    notes.append("diagnostics.grad_histograms turned on (per-layer gradient histograms)")
  if int(out.diagnostics.every) <= 0:
    out.diagnostics.every = int(out.train.log_every)
    notes.append(f"diagnostics.every was 0; set to train.log_every = {out.train.log_every}")
  resolved = make_plan(out).groups[0].cfg  # validated; unset optimizer numbers filled in
  numbers = resolve_point(flatten(out))[1]
  own = [f"{k} = {numbers.values[k]:g}" for k in OPTIMIZER_INFO.get(out.optimizer.name).reads
         if numbers.sources[k] in ("paper", "steps_fraction")]
  if own:
    notes.append(f"unset numbers take {out.optimizer.name}'s own defaults: {', '.join(own)}")
  return resolved, notes


def init_params(cfg: mlc.ConfigDict, num_classes: int, input_shape: tuple[int, ...],
                input_dtype: Any = jnp.float32) -> tuple[Any, Any, list[str], Any]:
  """(params, model, layer_names, state): exactly the parameters (and normalization
  state) `gradlab.train` run() starts from for ``train.seed`` and the config's scales."""
  spec = build_model(cfg, num_classes)
  init_key = jax.random.split(jax.random.PRNGKey(int(cfg.train.seed)), 3)[0]
  example = jnp.zeros((1, *input_shape), input_dtype)
  hp = {k: jnp.float32(v) for k, v in hparams_from_config(cfg).items()}
  init = functools.partial(init_variables, spec, example_x=example, hp=hp)
  params, state = jax.jit(init)(init_key)
  model, layer_names = spec.module, spec.layer_names
  return params, model, layer_names, state


def sharpness_reference(cfg: mlc.ConfigDict) -> dict[str, Any]:
  """The sharpness threshold of the config's optimizer at its learning rate
  (`gradlab.diagnostics.run_summary.threshold_reference`: 2/lr for sgd, (2+2 beta)/lr for
  momentum, Adam's (2+2 b1)/((1-b1) lr) on the preconditioned sharpness), the trace it is
  compared with, and the formula; threshold NaN for optimizers without one."""
  hp = hparams_from_config(cfg)
  return threshold_reference(cfg.optimizer.name, hp["learning_rate"], hp)


def _point(cfg: mlc.ConfigDict) -> dict[str, Any]:
  """The run's static and traced coordinates, with the papers' variances where known."""
  sigma_w2 = sigma_b2 = None
  if cfg.init.family in mean_field.FAMILY_VARIANCE_GAIN:
    sigma_w2, sigma_b2 = mean_field.mean_field_variances(
      float(cfg.init.sigma_w), float(cfg.init.sigma_b), cfg.init.family,
      bool(cfg.model.use_bias))
  return {"model": cfg.model.name, "depth": int(cfg.model.depth),
          "width": int(cfg.model.width), "activation": cfg.model.activation,
          "sigma_w": float(cfg.init.sigma_w), "sigma_b": float(cfg.init.sigma_b),
          "sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "optimizer": cfg.optimizer.name,
          "learning_rate": hparams_from_config(cfg)["learning_rate"], "steps": int(cfg.train.steps),
          "dataset": cfg.data.name}


def diagnose(cfg: mlc.ConfigDict, dataset: Any, notes: list[str] | None = None,
             train_fn: Callable[[mlc.ConfigDict, Any], Trajectory] = train_one
             ) -> dict[str, Any]:
  """Trains `cfg`'s point (prepared by `prepare_config`) on `dataset` and returns every
  diagnostic as a JSON-ready dict (see the module docstring)."""
  notes = list(notes or [])
  input_shape = tuple(dataset.x_train.shape[1:])
  traj = jax.device_get(train_fn(cfg, dataset))
  params, model, layer_names, state = init_params(cfg, dataset.num_classes, input_shape,
                                                  dataset.x_train.dtype)
  _, objective_fn = bound_loss(cfg.train, dataset.task.loss)
  n_eval = min(int(cfg.train.eval_size) or len(dataset.x_train), len(dataset.x_train))
  variables, x_eval = {"params": params, **state}, dataset.x_train[:n_eval]
  outputs = (model.apply(variables, x_eval, train=True, mutable=list(state))[0] if state
             else model.apply(variables, x_eval, train=True))
  check = objective_fn(outputs, dataset.y_train[:n_eval])
  out: dict[str, Any] = {
    "config": to_dict(cfg), "notes": notes, "point": _point(cfg),
    **summarize_run(cfg, traj, layer_names, chance_loss(cfg.train, dataset),
                    sharpness_reference(cfg)),
  }
  init: dict[str, Any] = {"grad_norm_by_layer": np.asarray(traj.grad_norm_by_layer[0]),
                          "initial_loss_recomputed": float(check)}
  if cfg.model.name == "mlp":
    x = np.asarray(dataset.x_train[:SIGNAL_EXAMPLES])
    key = jax.random.fold_in(jax.random.PRNGKey(int(cfg.train.seed)), 7)
    init.update(init_signal(cfg, params, x, key))
    if init["mean_field"] is None:
      notes.append(f"mean-field theory skipped: {init['mean_field_skipped']}")
  else:
    notes.append(f"signal propagation and mean-field parts skipped: model "
                 f"'{cfg.model.name}' is not an MLP")
  out["init"] = init
  if traj.grad_histogram is not None:
    out["grad_histograms"] = grad_histograms(traj, layer_names)
  return jsonable(out)


def grad_histograms(traj: Trajectory, layer_names: list[str]) -> dict[str, Any]:
  """The per-layer gradient histograms of a run with ``diagnostics.grad_histograms``
  (`gradlab.probes.grad_histogram`) as the diagnostics' 'grad_histograms' section:
  `edges` (the bucket edges: bucket b holds edges[b-1] < g <= edges[b], the first and
  last are open), `step`, `layer_names`, and per logged step and layer `counts` (steps x
  layers x buckets), `min`, `max`, `sum` of the entries (NaN entries left out)."""
  h = traj.grad_histogram
  return {"edges": probes.GRAD_HIST_EDGES.astype(np.float64), "step": np.asarray(traj.step),
          "layer_names": list(layer_names), "counts": np.asarray(h.counts),
          "min": np.asarray(h.min), "max": np.asarray(h.max), "sum": np.asarray(h.sum)}
