"""The one-run dashboard: figures of `gradlab.diagnose.diagnose`'s dict.

    write_figures(diag, workdir)           # dashboard.png, per_layer.png, sharpness.png

`diag` is the JSON-ready dict (non-finite numbers as None) that `gradlab.diagnose`
returns or diagnostics.json holds; these figures read its numbers and compute nothing
new: the loss and gradient-norm curves, per-layer gradient norms and update ratios as
heat strips, the sharpness trace with its optimizer's threshold (Cohen et al. 2021,
2022), per-layer gradients at init with the mean-field line chi_1^{(L-1-l)/2}
(Schoenholz et al. 2017, sec. 5), the forward signal q^l, c^l beside the mean field
(Poole et al. 2016), and the input-output Jacobian's singular values (Pennington et
al. 2017).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from gradlab.viz import canvas
from gradlab.viz.canvas import Figure, plt
from gradlab.viz.overlays import CRITICAL_COLOR


def _arr(values: Any) -> np.ndarray:
  """A JSON list (None = non-finite) back to a float array."""
  a = np.asarray(values if values is not None else [], dtype=object)
  return np.where(a == None, np.nan, a).astype(float)  # noqa: E711


def _number(value: Any) -> str:
  """A JSON number for a title: 3 significant digits, or "-" (None: non-finite)."""
  return "-" if value is None or not np.isfinite(float(value)) else f"{float(value):.3g}"


def _log_if_positive(ax: Any, *values: np.ndarray) -> None:
  v = np.concatenate([np.ravel(x) for x in values]) if values else np.array([])
  v = v[np.isfinite(v)]
  if v.size and np.all(v > 0):
    ax.set_yscale("log")


def draw_per_layer(ax: Any, diag: Mapping[str, Any]) -> None:
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
    ax.plot(layers, chi ** ((depth - 1 - layers) / 2.0), "-", color=CRITICAL_COLOR,
            label=f"chi_1^((L-1-l)/2), chi_1(q*) = {chi:.3g}")
    by_layer = _arr(init["chi_1_theory_by_layer"])
    prod = np.append(np.cumprod(by_layer[::-1])[::-1], 1.0)
    ax.plot(layers, np.sqrt(prod), ":", color=CRITICAL_COLOR,
            label="prod_k chi_1(q^k) (mean-field q^l)")
  _log_if_positive(ax, g / g[-1], kernel / kernel[-1])
  measured = init.get("chi_1_measured_mean")
  ax.set_title("gradients at init" + (f": measured chi_1 ~ {measured:.3g}" if measured else ""),
               fontsize=10)
  ax.set_xlabel("hidden layer l")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_ylabel("norm / norm at layer L-1")
  ax.legend(fontsize=7)


def draw_sharpness(ax: Any, diag: Mapping[str, Any]) -> None:
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


def _draw_loss(ax: Any, diag: Mapping[str, Any]) -> None:
  c, s = diag["curves"], diag["summary"]
  loss = _arr(c["loss"])
  ax.plot(_arr(c["step"]), loss, color="k", lw=1, label="training-batch loss")
  if s["chance_loss"] is not None:
    ax.axhline(s["chance_loss"], color="0.6", linestyle=":", label="chance")
  _log_if_positive(ax, loss)
  ax.set_title(f"loss: {_number(s['initial_loss'])} -> {_number(s['final_loss'])} "
               f"({s['regime']})", fontsize=10)
  ax.set_xlabel("step")
  ax.legend(fontsize=7)


def _draw_grad_norm(ax: Any, diag: Mapping[str, Any]) -> None:
  c = diag["curves"]
  g = _arr(c["grad_norm"])
  ax.plot(_arr(c["step"]), g, color="k", lw=1)
  _log_if_positive(ax, g)
  ax.set_title("global gradient norm", fontsize=10)
  ax.set_xlabel("step")


def _draw_heat_strip(fig: Figure, ax: Any, diag: Mapping[str, Any], key: str, title: str
                     ) -> None:
  """layers x logged steps, log color; non-finite entries black."""
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


def _draw_signal(ax: Any, diag: Mapping[str, Any]) -> None:
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
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_ylabel("q^l")
  right.set_ylabel("c^l", color="#2ca02c")
  ax.set_title("forward signal at init", fontsize=10)
  handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
  ax.legend(handles=handles, fontsize=7)


def _draw_jacobian(ax: Any, diag: Mapping[str, Any]) -> None:
  sv = diag["init"].get("jacobian_singular_values")
  if not sv:
    ax.set_axis_off()
    return
  for name, style in (("readout", "o-"), ("hidden", ".-")):
    s = _arr(sv[name])
    ax.plot(np.arange(1, s.size + 1), s, style, ms=3, label=f"to {name}")
    _log_if_positive(ax, s)
  ax.set_xlabel("index (largest first)")
  ax.set_ylabel("singular value")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_title("input-output Jacobian singular values", fontsize=10)
  ax.legend(fontsize=7)


def dashboard_figure(diag: Mapping[str, Any]) -> Figure:
  """The 2 x 4 dashboard of one run (`gradlab.diagnose.diagnose`'s dict, or
  diagnostics.json loaded)."""
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
  canvas.plain_log_ticks(fig)
  p = diag["point"]
  fig.suptitle(
    f"{p['model']} depth {p['depth']} width {p['width']} {p['activation']}, "
    f"sigma_w = {p['sigma_w']:.3g}, sigma_b = {p['sigma_b']:.3g}, {p['optimizer']} "
    f"lr = {p['learning_rate']:.3g}, {p['dataset']}: {diag['summary']['regime']}; "
    f"{onset_text(diag['onset'])}")
  return fig


def onset_text(on: Mapping[str, Any]) -> str:
  """The dashboard title's events in words: "explosion onset at step 40 (dense_3)",
  "no explosion onset"; never a Python None."""
  def event(name: str, step: Any, layer: Any) -> str:
    if step is None or (isinstance(step, float) and not np.isfinite(step)) or step < 0:
      return f"no {name}"
    return f"{name} at step {int(step)}" + (f" ({layer})" if layer not in (None, "") else "")

  explosion = event("explosion onset", on.get("explosion_step"), on.get("explosion_layer"))
  nonfinite = event("non-finite value", on.get("first_nonfinite_step"),
                    on.get("first_nonfinite_layer"))
  return f"{explosion}, {nonfinite}"


def write_figures(diag: Mapping[str, Any], workdir: str) -> dict[str, str]:
  """dashboard.png, per_layer.png and sharpness.png in `workdir`; returns {name: path}."""
  paths = {"dashboard": canvas.save_figure(dashboard_figure(diag),
                                    os.path.join(workdir, "dashboard.png"))}
  for name, draw in (("per_layer", draw_per_layer), ("sharpness", draw_sharpness)):
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    draw(ax, diag)
    paths[name] = canvas.save_figure(fig, os.path.join(workdir, f"{name}.png"))
  return paths
