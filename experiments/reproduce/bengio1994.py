"""Bengio, Simard & Frasconi 1994, "Learning long-term dependencies with gradient descent
is difficult" (IEEE Transactions on Neural Networks 5(2), 157-166).

Claim: where a recurrent network stores information robustly (the state inside the
basin of a hyperbolic attractor, where the map's Jacobian M' has |M'| < 1), the
derivative of the state at time t with respect to the state at time 0 vanishes
exponentially in t (Sec. II-III, Theorems 3-4): so does the through-time gradient ratio
||dL/dh_1|| / ||dL/dh_T||. gradlab measures that ratio at init with its through-time
probe (`gradlab.models.rnn`) on a tanh Elman RNN with an orthogonal recurrent matrix at
spectral radius rho < 1, at several sequence lengths T, and fits log ratio = slope T + c:
`log_ratio_slope_vs_T`.

Which closed form: the paper's rate is that of the Jacobian diag(phi'(a_t)) W itself
(the bound |M'| < 1), not of W alone. For an orthogonal W at radius rho one backward
step multiplies the squared gradient norm by rho^2 mean(phi'(a)^2), so the slope is
0.5 log chi_1, chi_1 = rho^2 E[phi'(sqrt(q*) z)^2] at the mean-field fixed point
q* = rho^2 E[phi(sqrt(q*) z)^2] + s_in of the pre-activations (s_in the input's
variance: `_rnn.mean_field_log_rate`, computed by `gradlab.theory`). log rho, the rate of
a linear RNN, is the bound the tanh network must stay below (|tanh'| <= 1):
`slope_minus_log_rho` <= 0. That the decay is exponential is the line's fit:
`log_ratio_linearity_r2` (R^2 of the median log ratio against T).

Tolerances, fixed before the quick runs from what the mean field leaves out: the hidden
state at H = 32 is not Gaussian and the adding inputs (U[0, 1] values, two markers) are
not either, so the rate is judged within 15% (rule rel 0.15); R^2 >= 0.99.

Scales: quick = H = 32 on the adding problem at T = 20, 35, 50, rho = 0.6, 0.8, 0.9, 4
seeds (one step each: the ratio is read at init); paper = H = 100, T = 10..100, 8 seeds.
"""

from __future__ import annotations

import numpy as np

from experiments.reproduce import figures
from experiments.reproduce._rnn import (
  RHO,
  SEQ_LEN,
  adding_input_variance,
  log_ratio_fit,
  mean_field_log_rate,
  rnn_config,
)
from experiments.reproduce.base import Context, Outcome, Paper, register
from experiments.reproduce.claims import judge

SOURCE = ("Sec. II-III, Theorems 3-4 (|M'| < 1 inside an attractor's basin: dx_t/dx_0 "
          "vanishes exponentially); the rate by gradlab's mean field of diag(phi') W")
MAIN_RHO = 0.8


def _config(ctx: Context, seq_lens: list[int], radii: list[float]):
  c = rnn_config("elman", ctx.pick(100, 32, 8), seq_lens[0], steps=1, lr=0.01,
                 eval_size=ctx.pick(256, 128, 16), batch_size=ctx.pick(64, 32, 8),
                 axes={RHO: radii, SEQ_LEN: seq_lens})
  c.sweep.replicas = ctx.pick(8, 4, 1)
  return c


def _per_radius(rows, rho: float, seq_lens: list[int]) -> dict:
  """Median log ratio per T at `rho`, the line through them, and the closed forms."""
  sub = rows[np.isclose(rows[RHO], rho)]
  with np.errstate(divide="ignore"):
    logs = np.log(sub["grad_h_ratio_init"].to_numpy(float))
  med = [float(np.median(logs[sub[SEQ_LEN].to_numpy() == t])) for t in seq_lens]
  slope, intercept, r2 = log_ratio_fit(seq_lens, med)
  s_in = adding_input_variance(float(np.mean(seq_lens)))
  return {"rho": rho, "seq_lens": seq_lens, "median_log_ratio": med, "slope": slope,
          "intercept": intercept, "r2": r2, "mean_field": mean_field_log_rate(rho, s_in),
          "log_rho": float(np.log(rho))}


def run(ctx: Context) -> Outcome:
  seq_lens = ctx.pick(list(range(10, 101, 10)), [20, 35, 50], [6, 10])
  radii = ctx.pick([0.5, 0.6, 0.7, 0.8, 0.9, 0.95], [0.6, 0.8, 0.9], [0.6, 0.8])
  rows = ctx.sweep(_config(ctx, seq_lens, radii), "ratio_vs_T")
  fits = [_per_radius(rows, rho, seq_lens) for rho in radii]
  main = next(f for f in fits if np.isclose(f["rho"], MAIN_RHO))
  excess = [f["slope"] - f["log_rho"] for f in fits]
  slopes = ", ".join(f"rho {f['rho']:g}: {f['slope']:.3f} (mean field {f['mean_field']:.3f},"
                     f" log rho {f['log_rho']:.3f})" for f in fits)
  claims = [
    judge("log_ratio_slope_vs_T",
          f"below spectral radius 1 (rho = {MAIN_RHO:g}) log ||dL/dh_1||/||dL/dh_T|| falls "
          "linearly in T at the rate of the Jacobian diag(phi') W", SOURCE,
          main["mean_field"], main["slope"], 0.15, "rel",
          note=f"slope of the median log ratio against T at init; {slopes}",
          why_failed="the measured decay rate is off the mean-field rate by more than 15% "
                     "(the per-rho slopes are in the note)"),
    judge("log_ratio_linearity_r2",
          "the decay is exponential: the median log ratio is a straight line in T",
          "Sec. III, Theorem 4 (exponential decay)", 1.0, main["r2"], 0.01, "at_least",
          note=f"R^2 of the line at rho = {MAIN_RHO:g}",
          why_failed="the log ratio bends away from a line in T"),
    judge("slope_minus_log_rho",
          "with |tanh'| <= 1 the decay is at least as fast as a linear RNN's rho^T: "
          "slope - log rho <= 0 at every rho", "Sec. III (|M'| <= |W| |phi'|)", 0.0,
          excess, 0.0, "at_most", compared=max(excess),
          statistic="largest slope - log rho over the radii",
          why_failed="at some radius the tanh network's ratio decayed slower than rho^T"),
  ]
  return Outcome(claims, {"fits": fits})


def draw(outcome: Outcome, path: str, ctx: Context) -> None:
  fits = outcome.figure["fits"]
  series, paper = [], []
  for i, f in enumerate(fits):
    t = np.asarray(f["seq_lens"], float)
    series.append({"label": f"gradlab rho {f['rho']:g} (slope {f['slope']:.3f})",
                   "x": t.tolist(), "y": f["median_log_ratio"], "color": f"C{i}"})
    anchor = f["median_log_ratio"][0]
    paper.append({"label": f"closed form, rho {f['rho']:g}: {f['mean_field']:.3f}",
                  "x": t.tolist(),
                  "y": (anchor + f["mean_field"] * (t - t[0])).tolist(), "paper": True})
  radii = [f["rho"] for f in fits]
  dense = np.linspace(min(radii), max(radii), 30)
  s_in = adding_input_variance(float(np.mean(fits[0]["seq_lens"])))
  panels = [
    {"kind": "curves", "xlabel": "sequence length T", "ylabel": "median log(||dL/dh_1|| / "
     "||dL/dh_T||) at init", "title": "log ratio against T (dashed: slope of the closed form)",
     "series": series + paper},
    {"kind": "curves", "xlabel": "spectral radius rho", "ylabel": "slope of log ratio vs T",
     "title": "decay rate per step",
     "series": [{"label": "gradlab (fitted slope)", "x": radii,
                 "y": [f["slope"] for f in fits], "style": "o"},
                {"label": "paper's rate: 0.5 log chi_1 (mean field)", "x": dense.tolist(),
                 "y": [mean_field_log_rate(r, s_in) for r in dense], "paper": True},
                {"label": "log rho (linear RNN bound)", "x": dense.tolist(),
                 "y": np.log(dense).tolist(), "style": ":", "color": "grey"}]},
  ]
  figures.draw_panels(path, figures.title_of("bengio1994", "vanishing gradients through time",
                                             SOURCE, ctx.scale), panels)


PAPER = register(Paper(
  id="bengio1994",
  title="Learning long-term dependencies with gradient descent is difficult",
  citation="Y. Bengio, P. Simard, P. Frasconi. IEEE Transactions on Neural Networks 5(2), "
           "157-166, 1994",
  summary="below spectral radius 1 the through-time gradient ratio decays exponentially in T",
  run=run, draw=draw))
