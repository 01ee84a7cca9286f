"""Yang, Pennington, Rao, Sohl-Dickstein, Schoenholz 2019, "A Mean Field Theory of Batch
Normalization" (ICLR 2019, arXiv:1902.08129).

Claim: in a plain fully connected network with BatchNorm before every nonlinearity, the
gradients at initialization EXPLODE going backwards, by a constant factor per layer that
no choice of sigma_w removes (BatchNorm is scale invariant). For ReLU the paper's
large-batch rate is lambda = pi / (pi - 1) ~ 1.467 for the squared gradient norm per
layer, i.e. sqrt(pi / (pi - 1)) ~ 1.211 for the gradient norm (`grad_growth_per_layer`;
the squared-norm rate is the extra claim `grad_sq_growth_per_layer`).

gradlab's measure: a BN-ReLU MLP (``model.norm = 'batch'``, `gradlab.models.mlp`; no
biases, which BatchNorm cancels) of `depth` layers at initialization; the per-layer
gradient norms ||dL/dW_l|| of the first logged step (`grad_norm_by_layer` at step 0,
minibatch statistics, cross-entropy on MNIST-1D) of several seeds; a least-squares fit of
the mean log norm against the layer index over the hidden layers away from the ends (the
first `EDGE` and last `EDGE` layers are dropped: the readout and the input layer are not
stationary); the growth per layer going back is exp(-slope). A He-initialized ReLU MLP
without BatchNorm is the control (its gradients neither grow nor shrink: rate 1), drawn on
the figure.

Tolerances, chosen before the run: the rate is a large-width, large-batch limit; at width
256, batch 128 and 4 seeds, finite-width and finite-batch corrections and the fit's noise
are a few percent of the rate, so quick: |rate - 1.211| <= 0.05 (a quarter of the excess
over 1; 0.1 for the squared rate); paper scale (width 1024, batch 512): 0.03 / 0.06.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.reproduce import figures
from experiments.reproduce.base import Context, Outcome, Paper, register
from experiments.reproduce.claims import judge
from gradlab.config import make_axes
from gradlab.defaults import base_config

LAMBDA_RELU = math.pi / (math.pi - 1.0)  # squared-norm rate per layer, large batch
EDGE = 3  # layers dropped at each end of the fit
SOURCE = ("Sec. 3 (ReLU: gradient explosion rate lambda = pi/(pi-1) per layer in squared "
          "norm, large-batch limit); the value as rederived in K. Luther, 'Batch Norm Causes "
          "Exploding Gradients' (2020)")


def _config(ctx: Context, norm: str):
  c = base_config()
  c.model.depth = ctx.pick(50, 32, 10)
  c.model.width = ctx.pick(1024, 256, 32)
  c.model.activation = "relu"
  c.model.norm = norm
  c.model.use_bias = False
  c.init.family = "he"
  c.data.name = ctx.pick("mnist", "mnist1d", "mnist1d")
  c.data.batch_size = ctx.pick(512, 128, 32)
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1e-3
  c.train.steps = 1  # step 0's gradients are the measurement
  c.train.log_every = 1
  c.train.eval_size = ctx.pick(1024, 256, 64)
  c.sweep.axes = make_axes({"train.seed": list(range(ctx.pick(8, 4, 2)))})
  return c


def _layer_norms(ctx: Context, norm: str) -> np.ndarray:
  """(seeds, hidden layers): ||dL/dW_l|| at step 0 for each seed."""
  name = f"grads_{norm}"
  rows = ctx.sweep(_config(ctx, norm), name)
  norms = []
  for run_id in rows["run_id"]:
    by_layer = np.asarray(ctx.trajectory(name, run_id)["grad_norm_by_layer"], float)
    norms.append(by_layer.reshape(-1, by_layer.shape[-1])[0, :-1])  # step 0, no readout
  return np.stack(norms)


def _growth(norms: np.ndarray) -> tuple[float, list[float]]:
  """(exp(-slope) of the mean log norm over the fitted layers, the mean log10 curve)."""
  logs = np.log(norms).mean(axis=0)
  layers = np.arange(len(logs))
  keep = slice(EDGE, len(logs) - EDGE) if len(logs) > 2 * EDGE + 2 else slice(None)
  slope = np.polyfit(layers[keep], logs[keep], 1)[0]
  return float(np.exp(-slope)), (logs / np.log(10.0)).tolist()


def run(ctx: Context) -> Outcome:
  tol = ctx.pick(0.03, 0.05)
  rate, curve = _growth(_layer_norms(ctx, "batch"))
  control, control_curve = _growth(_layer_norms(ctx, "none"))
  note = (f"BN-ReLU MLP, fit over layers {EDGE}..depth-{EDGE + 1}; "
          f"control without BatchNorm: {control:.3f} per layer")
  why = ("the measured per-layer growth of the step-0 gradient norms differs from the "
         "mean-field rate (see figure.png: log10 ||dL/dW_l|| against l)")
  claims = [
    judge("grad_growth_per_layer",
          "a BN-ReLU network's gradient norm grows by sqrt(pi/(pi-1)) per layer going back",
          SOURCE, math.sqrt(LAMBDA_RELU), rate, tol, "abs", note=note, why_failed=why),
    judge("grad_sq_growth_per_layer",
          "the squared gradient norm grows by lambda = pi/(pi-1) per layer going back",
          SOURCE, LAMBDA_RELU, rate ** 2, 2 * tol, "abs", note=note, why_failed=why),
  ]
  return Outcome(claims, {"bn": curve, "no_bn": control_curve, "rate": rate,
                          "control_rate": control})


def draw(outcome: Outcome, path: str, ctx: Context) -> None:
  f = outcome.figure
  bn = np.asarray(f["bn"], float)
  layers = np.arange(len(bn))
  mid = len(bn) // 2
  paper = bn[mid] + (mid - layers) * math.log10(math.sqrt(LAMBDA_RELU))
  panel = {"kind": "curves", "xlabel": "layer l (0 = input side)",
           "ylabel": "log10 ||dL/dW_l|| at init (mean over seeds)",
           "title": f"growth per layer going back: BN {f['rate']:.3f}, "
                    f"no BN {f['control_rate']:.3f}",
           "series": [{"label": "gradlab: BN-ReLU", "x": layers.tolist(), "y": bn.tolist()},
                      {"label": "gradlab: ReLU, no BN (He init)", "x": layers.tolist(),
                       "y": f["no_bn"], "style": "s-"},
                      {"label": "paper: slope sqrt(pi/(pi-1)) per layer", "x": layers.tolist(),
                       "y": paper.tolist(), "paper": True}]}
  figures.draw_panels(path, figures.title_of("yang2019", "BatchNorm gradient explosion at init",
                                             "Sec. 3, lambda = pi/(pi-1)", ctx.scale), [panel])


PAPER = register(Paper(
  id="yang2019",
  title="A Mean Field Theory of Batch Normalization",
  citation="G. Yang, J. Pennington, V. Rao, J. Sohl-Dickstein, S. S. Schoenholz. ICLR 2019. "
           "arXiv:1902.08129",
  summary="BN-ReLU MLP at init: gradient norms grow by sqrt(pi/(pi-1)) per layer going back",
  run=run, draw=draw))
