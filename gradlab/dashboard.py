"""One run with every diagnostic on: what it measured, beside what the theory predicts.

    diag = diagnose(cfg, dataset)          # JSON-ready dict (written as diagnostics.json)
    write_figures(diag, workdir)           # dashboard.png, per_layer.png, sharpness.png

`diagnose` trains the config's single point once (`gradlab.train.train_one`, with
``train.layer_probes`` on and ``diagnostics.every`` on) and, at init, re-creates the
exact parameters `run()` starts from (the first of ``jax.random.split(PRNGKey(seed), 3)``
into ``model.init``, then `gradlab.models.scale_params`) to measure signal propagation
(`gradlab.diagnostics.signal`) next to the mean-field theory (`gradlab.theory`):

- q^l, c^l: measured pre-activation second moments and correlations of paired inputs,
  beside `theory.mean_field_trajectory` from the inputs' own q and c (Poole et al. 2016);
- g^l = E[(dL/dh^l)^2] and the measured chi_1 = g^l / g^{l+1} (depth - 1 values), beside
  chi_1 at q* (Schoenholz et al. 2017, sec. 5) and chi_1 at each layer's q^l; by the
  backward mean-field pass ||dL/dh^l|| = ||dL/dh^{L-1}|| chi_1^{(L-1-l)/2};
- singular values of the input-output Jacobian (to the logits and to the last hidden
  pre-activation; Pennington et al. 2017);
and, from the run: loss curve, global and per-layer gradient norms, per-layer update
ratios, the sharpness trace with its optimizer's threshold (Cohen et al. 2021, 2022:
`theory.sharpness_threshold`; Adam's preconditioned sharpness for adam and adamw), the
explosion onset and the first non-finite step and layer.

Keys of the dict (non-finite numbers are JSON null): config, notes, point, summary,
curves, sharpness, onset, init. See docs/diagnostics.md for each field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from gradlab import overlays, prediction, regimes, theory
from gradlab.config import copy_config, flatten, make_axes, to_dict
from gradlab.diagnostics import signal
from gradlab.losses import bound_loss, chance_loss
from gradlab.models import build_model
from gradlab.sweep.grid import make_plan
from gradlab.train import Trajectory, hparams_from_config, init_variables, train_one

SIGNAL_EXAMPLES = 256  # inputs the init-time signal statistics average over
THRESHOLD_FORMULA = {"sgd": "2/lr", "gd": "2/lr", "momentum": "(2+2 beta)/lr",
                     "heavy_ball": "(2+2 beta)/lr", "nesterov": "(2+2 beta)/((1+2 beta) lr)",
                     "adam": "(2+2 b1)/((1-b1) lr)", "adamw": "(2+2 b1)/((1-b1) lr)"}


def prepare_config(cfg: mlc.ConfigDict) -> tuple[mlc.ConfigDict, list[str]]:
  """A copy of `cfg` for one diagnostic run, and notes on what was changed: sweep axes
  dropped (the run is the config's own point), ``train.layer_probes`` on, and
  ``diagnostics.every`` set to ``train.log_every`` when 0. Validated like a sweep point
  (one ConfigError naming the bad key)."""
  out, notes = copy_config(cfg), []
  if len(out.sweep.axes):
    notes.append("sweep axes ignored (this is the config's single point): "
                 + ", ".join(out.sweep.axes))
    out.sweep.axes = make_axes({})
  if not out.train.layer_probes:
    out.train.layer_probes = True
    notes.append("train.layer_probes turned on")
  if int(out.diagnostics.every) <= 0:
    out.diagnostics.every = int(out.train.log_every)
    notes.append(f"diagnostics.every was 0; set to train.log_every = {out.train.log_every}")
  make_plan(out)
  return out, notes


def init_params(cfg: mlc.ConfigDict, num_classes: int, input_shape: tuple[int, ...],
                input_dtype: Any = jnp.float32) -> tuple[Any, Any, list[str], Any]:
  """(params, model, layer_names, state): exactly the parameters (and normalization
  state) `gradlab.train` run() starts from for ``train.seed`` and the config's scales."""
  spec = build_model(cfg, num_classes)
  init_key = jax.random.split(jax.random.PRNGKey(int(cfg.train.seed)), 3)[0]
  example = jnp.zeros((1, *input_shape), input_dtype)
  hp = {k: jnp.float32(v) for k, v in hparams_from_config(cfg).items()}
  params, state = jax.jit(lambda k: init_variables(spec, k, example, hp))(init_key)
  model, layer_names = spec.module, spec.layer_names
  return params, model, layer_names, state


def sharpness_reference(cfg: mlc.ConfigDict) -> dict[str, Any]:
  """The sharpness threshold of the config's optimizer at its learning rate
  (`theory.sharpness_threshold`: 2/lr for sgd, (2+2 beta)/lr for momentum, Adam's
  (2+2 b1)/((1-b1) lr) on the preconditioned sharpness), the trace it is compared with,
  and the formula; threshold NaN for optimizers without one."""
  name = cfg.optimizer.name
  hp = {k: np.array([v]) for k, v in hparams_from_config(cfg).items()}
  threshold = float(prediction.initial_threshold(name, hp)[0])
  return {"optimizer": name, "learning_rate": float(cfg.optimizer.learning_rate),
          "threshold": threshold, "formula": THRESHOLD_FORMULA.get(name, ""),
          "compared": ("preconditioned_sharpness" if name in prediction.PRECONDITIONED
                       else "sharpness"),
          "source": (theory.SHARPNESS_THRESHOLDS.get(name).source
                     if name in theory.SHARPNESS_THRESHOLDS else "")}


def init_signal(cfg: mlc.ConfigDict, params: Any, x: np.ndarray, key: jax.Array
                ) -> dict[str, Any]:
  """Init-time signal propagation of an MLP's `params` on inputs `x`, with the
  mean-field predictions where the theory applies (`gradlab.overlays.skip_reason`)."""
  act = cfg.model.activation
  x_BxF = jnp.asarray(x.reshape(x.shape[0], -1), jnp.float32)
  xb_BxF = jnp.roll(x_BxF, 1, axis=0)
  stats = jax.jit(lambda p, a, b: signal.signal_stats(p, act, a, b))(params, x_BxF, xb_BxF)
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
  flat = flatten(cfg)
  reason = overlays.skip_reason(flat)
  if reason is not None:
    return {**out, "mean_field": None, "mean_field_skipped": reason, "q_theory": None,
            "c_theory": None, "chi_1_theory": None, "chi_1_theory_by_layer": None}
  depth = len(stats.q)
  sw2, sb2 = overlays.mean_field_variances(float(cfg.init.sigma_w), float(cfg.init.sigma_b),
                                           cfg.init.family, bool(cfg.model.use_bias))
  q_th, c_th = theory.mean_field_trajectory(act, float(sw2), float(sb2), depth, q_in, c_in)
  return {**out, "q_theory": q_th, "c_theory": c_th,
          "chi_1_theory": float(theory.chi_1(act, sw2, sb2)),
          "chi_1_theory_by_layer": theory.chi_1(act, sw2, sb2, q_th[:-1]),
          "mean_field": {
            "sigma_w2": float(sw2), "sigma_b2": float(sb2),
            "q_star": float(theory.q_star(act, sw2, sb2)),
            "xi_c": float(theory.xi_c(act, sw2, sb2)),
            "trainable_depth": float(theory.trainable_depth(act, sw2, sb2)),
            "critical_sigma_w": overlays.critical_sigma_w(act, float(cfg.init.sigma_b),
                                                          cfg.init.family,
                                                          bool(cfg.model.use_bias))}}


def _layer(names: list[str], index: Any) -> str | None:
  i = int(index)
  return names[i] if 0 <= i < len(names) else None


def _step(value: Any) -> int | None:
  return int(value) if int(value) >= 0 else None


def summarize_run(cfg: mlc.ConfigDict, traj: Trajectory, layer_names: list[str],
                  chance: float) -> dict[str, Any]:
  """The run's summary, curves, sharpness and onset sections of the diagnostics."""
  tr, on = traj.tracker, traj.onset
  summary = {"first_nonfinite_step": int(tr.first_nonfinite_step),
             "initial_grad_norm": float(tr.initial_grad_norm),
             "max_grad_norm": float(tr.max_grad_norm),
             "initial_loss": float(traj.initial_loss), "final_loss": float(traj.final_loss),
             "skipped_steps": int(traj.skipped_steps)}
  regime = str(regimes.classify(summary, cfg.regimes.explode_factor,
                                cfg.regimes.stall_fraction, chance))
  ref = sharpness_reference(cfg)
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
    "onset": {"explosion_step": _step(on.onset_step),
              "explosion_layer": _layer(layer_names, on.onset_layer),
              "explosion_ratio": float(on.onset_ratio),
              "first_nonfinite_step": _step(on.nonfinite_step),
              "first_nonfinite_layer": _layer(layer_names, on.nonfinite_layer),
              "grad_norm_explosion_step": _step(tr.explosion_step),
              "loss_or_grad_nonfinite_step": _step(tr.first_nonfinite_step)},
  }


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
  sigma_w2 = sigma_b2 = None
  if cfg.init.family in overlays.FAMILY_VARIANCE_GAIN:
    sigma_w2, sigma_b2 = overlays.mean_field_variances(
      float(cfg.init.sigma_w), float(cfg.init.sigma_b), cfg.init.family,
      bool(cfg.model.use_bias))
  out: dict[str, Any] = {
    "config": to_dict(cfg), "notes": notes,
    "point": {"model": cfg.model.name, "depth": int(cfg.model.depth),
              "width": int(cfg.model.width), "activation": cfg.model.activation,
              "sigma_w": float(cfg.init.sigma_w), "sigma_b": float(cfg.init.sigma_b),
              "sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "optimizer": cfg.optimizer.name,
              "learning_rate": float(cfg.optimizer.learning_rate), "steps": int(cfg.train.steps),
              "dataset": cfg.data.name},
    **summarize_run(cfg, traj, layer_names,
                    chance_loss(cfg.train, dataset)),
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
  return jsonable(out)


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


# --------------------------------------------------------------------------- figures


def _arr(values: Any) -> np.ndarray:
  """A JSON list (None = non-finite) back to a float array."""
  a = np.asarray(values if values is not None else [], dtype=object)
  return np.where(a == None, np.nan, a).astype(float)  # noqa: E711


def _log_if_positive(ax, *values: np.ndarray) -> None:
  v = np.concatenate([np.ravel(x) for x in values]) if values else np.array([])
  v = v[np.isfinite(v)]
  if v.size and np.all(v > 0):
    ax.set_yscale("log")


def draw_per_layer(ax, diag: Mapping[str, Any]) -> None:
  """Per-layer gradient norm against depth at init, relative to the last hidden layer,
  with the mean-field line chi_1^{(L-1-l)/2} (Schoenholz et al. 2017, sec. 5)."""
  init = diag["init"]
  if "grad_sq" not in init:
    ax.text(0.5, 0.5, "not an MLP:\nno per-layer signal", ha="center", va="center",
            transform=ax.transAxes)
    return
  g = np.sqrt(_arr(init["grad_sq"]))
  depth = g.size
  layers = np.arange(depth)
  ax.plot(layers, g / g[-1], "o", ms=4, color="k", label="RMS dL/dh^l (measured)")
  kernel = _arr(init["grad_norm_by_layer"])[:depth]
  ax.plot(layers, kernel / kernel[-1], "s", ms=3, mfc="none", color="0.45",
          label="||dL/dW^l|| step 0 (train loss)")
  if init.get("chi_1_theory") is not None:
    chi = init["chi_1_theory"]
    ax.plot(layers, chi ** ((depth - 1 - layers) / 2.0), "-", color=overlays.CRITICAL_COLOR,
            label=f"chi_1^((L-1-l)/2), chi_1(q*) = {chi:.3g}")
    by_layer = _arr(init["chi_1_theory_by_layer"])
    prod = np.append(np.cumprod(by_layer[::-1])[::-1], 1.0)
    ax.plot(layers, np.sqrt(prod), ":", color=overlays.CRITICAL_COLOR,
            label="prod_k chi_1(q^k) (mean-field q^l)")
  _log_if_positive(ax, g / g[-1], kernel / kernel[-1])
  measured = init.get("chi_1_measured_mean")
  ax.set_title("gradients at init" + (f": measured chi_1 ~ {measured:.3g}" if measured else ""),
               fontsize=10)
  ax.set_xlabel("hidden layer l")
  ax.set_ylabel("norm / norm at layer L-1")
  ax.legend(fontsize=7)


def draw_sharpness(ax, diag: Mapping[str, Any]) -> None:
  """The sharpness trace against step, with the optimizer's threshold (Cohen et al.)."""
  sh = diag["sharpness"]
  steps, trace = _arr(sh["step"]), _arr(sh[sh["compared"]])
  ax.plot(steps, trace, "o-", ms=3, color="k", label=sh["compared"].replace("_", " "))
  if sh["threshold"] is not None:
    ax.axhline(sh["threshold"], color="#d62728", linestyle="--",
               label=f"{sh['formula'] or 'threshold'} = {sh['threshold']:.3g}")
  ax.set_xlabel("step")
  ax.set_ylabel("top Hessian eigenvalue")
  ax.set_title(f"sharpness ({sh['optimizer']}, lr = {sh['learning_rate']:.3g})", fontsize=10)
  ax.legend(fontsize=7)


def _draw_loss(ax, diag: Mapping[str, Any]) -> None:
  c, s = diag["curves"], diag["summary"]
  loss = _arr(c["loss"])
  ax.plot(_arr(c["step"]), loss, color="k", lw=1, label="training-batch loss")
  if s["chance_loss"] is not None:
    ax.axhline(s["chance_loss"], color="0.6", linestyle=":", label="chance")
  _log_if_positive(ax, loss)
  ax.set_title(f"loss: {s['initial_loss'] or float('nan'):.3g} -> "
               f"{s['final_loss'] or float('nan'):.3g} ({s['regime']})", fontsize=10)
  ax.set_xlabel("step")
  ax.legend(fontsize=7)


def _draw_grad_norm(ax, diag: Mapping[str, Any]) -> None:
  c = diag["curves"]
  g = _arr(c["grad_norm"])
  ax.plot(_arr(c["step"]), g, color="k", lw=1)
  _log_if_positive(ax, g)
  ax.set_title("global gradient norm", fontsize=10)
  ax.set_xlabel("step")


def _draw_heat_strip(fig, ax, diag: Mapping[str, Any], key: str, title: str) -> None:
  """layers x logged steps, log color; non-finite entries black."""
  from matplotlib.colors import LogNorm

  c = diag["curves"]
  values = np.array([_arr(row) for row in c[key]]).T  # (layers, logs)
  steps, names = _arr(c["step"]), c["layer_names"]
  if values.size == 0:
    ax.set_title(f"{title}: not recorded", fontsize=10)
    return
  ok = np.isfinite(values) & (values > 0)
  lo, hi = (values[ok].min(), values[ok].max()) if ok.any() else (1.0, 10.0)
  ax.set_facecolor("black")
  edges = np.append(steps, steps[-1] + (steps[-1] - steps[-2] if steps.size > 1 else 1))
  mesh = ax.pcolormesh(edges, np.arange(len(names) + 1) - 0.5, np.ma.masked_invalid(
    np.where(ok, values, np.nan)), norm=LogNorm(lo, hi if hi > lo else lo * 10),
                       cmap="magma")
  every = max(1, len(names) // 8)
  ax.set_yticks(np.arange(len(names))[::every], names[::every], fontsize=7)
  fig.colorbar(mesh, ax=ax, pad=0.01)
  ax.set_title(title, fontsize=10)
  ax.set_xlabel("step")


def _draw_signal(ax, diag: Mapping[str, Any]) -> None:
  init = diag["init"]
  if "q" not in init:
    ax.set_axis_off()
    return
  q = _arr(init["q"])
  layers = np.arange(q.size)
  ax.plot(layers, q, "o", ms=3, color="k", label="q^l measured")
  right = ax.twinx()
  right.plot(layers, _arr(init["c"]), "^", ms=3, color="#2ca02c", label="c^l measured")
  if init.get("q_theory") is not None:
    ax.plot(layers, _arr(init["q_theory"]), "-", color="k", lw=1, label="q^l mean field")
    right.plot(layers, _arr(init["c_theory"]), "-", color="#2ca02c", lw=1,
               label="c^l mean field")
  _log_if_positive(ax, q)
  right.set_ylim(-0.05, 1.05)
  ax.set_xlabel("hidden layer l")
  ax.set_ylabel("q^l")
  right.set_ylabel("c^l", color="#2ca02c")
  ax.set_title("forward signal at init", fontsize=10)
  handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
  ax.legend(handles=handles, fontsize=7)


def _draw_jacobian(ax, diag: Mapping[str, Any]) -> None:
  sv = diag["init"].get("jacobian_singular_values")
  if not sv:
    ax.set_axis_off()
    return
  for name, style in (("readout", "o-"), ("hidden", ".-")):
    s = _arr(sv[name])
    ax.plot(np.arange(1, s.size + 1), s, style, ms=3, label=f"to {name}")
    _log_if_positive(ax, s)
  ax.set_xlabel("index")
  ax.set_title("input-output Jacobian singular values", fontsize=10)
  ax.legend(fontsize=7)


def dashboard_figure(diag: Mapping[str, Any]):
  """The 2 x 4 dashboard of one run (`diagnose`'s dict, or diagnostics.json loaded)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, grid = plt.subplots(2, 4, figsize=(22, 9), layout="constrained")
  _draw_loss(grid[0, 0], diag)
  _draw_grad_norm(grid[0, 1], diag)
  _draw_heat_strip(fig, grid[0, 2], diag, "grad_norm_by_layer", "gradient norm per layer")
  _draw_heat_strip(fig, grid[0, 3], diag, "update_ratio_by_layer",
                   "update ratio ||dW|| / ||W|| per layer")
  draw_sharpness(grid[1, 0], diag)
  draw_per_layer(grid[1, 1], diag)
  _draw_signal(grid[1, 2], diag)
  _draw_jacobian(grid[1, 3], diag)
  p, on = diag["point"], diag["onset"]
  fig.suptitle(
    f"{p['model']} depth {p['depth']} width {p['width']} {p['activation']}, "
    f"sigma_w = {p['sigma_w']:.3g}, sigma_b = {p['sigma_b']:.3g}, {p['optimizer']} "
    f"lr = {p['learning_rate']:.3g}, {p['dataset']}: {diag['summary']['regime']}; explosion "
    f"onset step {on['explosion_step']} ({on['explosion_layer']}), first non-finite step "
    f"{on['first_nonfinite_step']} ({on['first_nonfinite_layer']})")
  return fig


def write_figures(diag: Mapping[str, Any], workdir: str) -> dict[str, str]:
  """dashboard.png, per_layer.png and sharpness.png in `workdir`; returns {name: path}."""
  import os

  import matplotlib.pyplot as plt

  from gradlab.plots import save_figure

  paths = {"dashboard": save_figure(dashboard_figure(diag),
                                    os.path.join(workdir, "dashboard.png"))}
  for name, draw in (("per_layer", draw_per_layer), ("sharpness", draw_sharpness)):
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    draw(ax, diag)
    paths[name] = save_figure(fig, os.path.join(workdir, f"{name}.png"))
  return paths
