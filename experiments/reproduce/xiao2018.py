"""Xiao, Bahri, Sohl-Dickstein, Schoenholz, Pennington 2018, "Dynamical Isometry and a Mean
Field Theory of CNNs: How to Train 10,000-Layer Vanilla Convolutional Neural Networks"
(ICML 2018, arXiv:1806.05393). The full text could not be retrieved here; the claim is
the paper's headline result as stated in its abstract.

Claim: a vanilla tanh CNN (no residuals, no normalization) at the mean-field critical point
trains at far greater depth with delta-orthogonal kernels (Algorithm 1: an orthogonal matrix
at the kernel's centre tap, zero elsewhere; `init.family = 'delta_orthogonal'`) than with
Gaussian kernels at the same sigma_w^2, sigma_b^2 (abstract and experiments: delta-
orthogonal networks of 10,000 layers train on MNIST and CIFAR-10; Gaussian ones at the
critical point train much more slowly and stop training as depth grows). The paper gives no
single Gaussian trainable depth to divide by, so the claim is judged as an ordering:
`deepest_trained_depth_ratio` = deepest trained depth with delta-orthogonal / with
Gaussian (LeCun) kernels must exceed 1 (rule 'above'; the paper's own ratio is at least
10,000 / the Gaussian depth limit, i.e. large).

gradlab's measure: gradlab's 'cnn' family (3x3 'SAME' convolutions of constant width, tanh,
global average pool, Dense readout) on the 8x8 'digits' images, at the critical point of
tanh with sigma_b^2 = 1e-4 (`gradlab.theory.critical_sigma_w2`: sigma_w^2 ~ 1.0, where the
delta-orthogonal network is close to isometric), trained with SGD + momentum, one run per
(depth, family); a run trained when its regime is 'trained' or 'catapult' (`gradlab.regimes`).
The measurable ratio is bounded by the depth grid: at most max depth / min depth (quick:
36 / 4 = 9; every depth and family is its own compile, which bounds the grid), and when
both families train at every depth of the grid the ratio is 1 and says only that the
quick grid is too shallow to separate them (the paper needs hundreds to
thousands of layers for Gaussian kernels to fail). The figure shows the final loss against
depth for both families.

Paper scale: CIFAR-10, width 256, depths 32 .. 10,000. gradlab's 'cnn' builds its layers in
a Python loop (no scan over layers), so the 2,048- and 10,000-layer programs would take very
long to compile; the configuration validates, but it has not been run.

Tolerance: none beyond the ordering (rule 'above': ratio > 1).
"""

from __future__ import annotations

import numpy as np

from experiments.reproduce import figures
from experiments.reproduce.base import Context, Outcome, Paper, register
from experiments.reproduce.claims import judge
from gradlab import theory
from gradlab.config import make_axes
from gradlab.defaults import base_config

SIGMA_B2 = 1e-4
FAMILIES = ("delta_orthogonal", "lecun")
TRAINED = ("trained", "catapult")
SOURCE = ("Abstract and experiments (delta-orthogonal trains 10,000-layer vanilla CNNs; "
          "Gaussian kernels at the same critical point do not train that deep)")


def _config(ctx: Context):
  c = base_config()
  c.model.name = "cnn"
  c.model.width = ctx.pick(256, 8, 4)
  c.model.kernel_size = 3
  c.model.downsample = ctx.pick(0, 2, 2)
  c.model.activation = "tanh"
  c.init.sigma_b = float(np.sqrt(SIGMA_B2))
  c.init.sigma_w = round(float(np.sqrt(theory.critical_sigma_w2("tanh", SIGMA_B2))), 5)
  c.data.name = ctx.pick("cifar10", "digits", "digits")
  c.data.batch_size = ctx.pick(128, 32, 16)
  c.optimizer.name = "momentum"
  c.optimizer.learning_rate = ctx.pick(1e-3, 1e-2, 1e-2)
  c.optimizer.momentum = 0.9
  c.train.steps = ctx.pick(5000, 200, 20)
  c.train.log_every = ctx.pick(50, 20, 10)
  c.train.eval_size = ctx.pick(2048, 512, 64)
  c.sweep.axes = make_axes({
    "model.depth": ctx.pick([32, 128, 512, 2048, 10000], [4, 12, 36], [2]),
    "init.family": list(FAMILIES)})
  return c


def _deepest(rows, family: str) -> tuple[float, list[int], list[float], list[str]]:
  """(deepest trained depth or NaN, depths, final losses, regimes) of one family."""
  mine = rows[rows["init.family"] == family].sort_values("model.depth")
  depths = mine["model.depth"].astype(int).tolist()
  regimes = mine["regime"].astype(str).tolist()
  trained = [d for d, r in zip(depths, regimes, strict=True) if r in TRAINED]
  return (float(max(trained)) if trained else float("nan"), depths,
          mine["final_loss"].astype(float).tolist(), regimes)


def run(ctx: Context) -> Outcome:
  rows = ctx.sweep(_config(ctx), "depths")
  out = {f: _deepest(rows, f) for f in FAMILIES}
  orth, gauss = out["delta_orthogonal"][0], out["lecun"][0]
  ratio = orth / gauss if gauss > 0 else float("nan")
  depths = out["lecun"][1]
  bound = (" (a lower bound: delta-orthogonal trained at the deepest depth tried)"
           if orth == max(depths) else "")
  claims = [judge(
    "deepest_trained_depth_ratio",
    "delta-orthogonal kernels train a critical vanilla tanh CNN deeper than Gaussian ones",
    SOURCE, 1.0, ratio, 0.0, "above",
    note=(f"deepest trained depth: delta-orthogonal {orth:g}, Gaussian {gauss:g}; depths "
          f"tried {depths}, so the measurable ratio is at most {max(depths) / min(depths):g}"
          f"{bound}"),
    why_failed=("both families trained at the same deepest depth of the grid: the quick "
                "grid is far shallower than the depths (hundreds to 10,000 layers) where the "
                "paper separates them" if orth == gauss else
                "the Gaussian-initialized network trained at least as deep"))]
  figure = {f: {"depths": v[1], "final_loss": v[2], "regimes": v[3], "deepest": v[0]}
            for f, v in out.items()}
  return Outcome(claims, figure)


def draw(outcome: Outcome, path: str, ctx: Context) -> None:
  f = outcome.figure
  series = [{"label": f"gradlab: {name}", "x": f[key]["depths"], "y": f[key]["final_loss"],
             "style": style} for key, name, style in
            (("delta_orthogonal", "delta-orthogonal", "o-"), ("lecun", "Gaussian (LeCun)", "s-"))]
  panel = {"kind": "curves", "xlabel": "depth (conv layers)", "ylabel": "final training loss",
           "title": f"critical tanh CNN on digits; deepest trained: delta-orthogonal "
                    f"{f['delta_orthogonal']['deepest']:g}, Gaussian {f['lecun']['deepest']:g}",
           "series": series,
           "refs": [{"label": "chance: log 10", "y": float(np.log(10.0))}]}
  figures.draw_panels(path, figures.title_of("xiao2018", "delta-orthogonal vs Gaussian depth",
                                             "abstract and experiments", ctx.scale), [panel])


PAPER = register(Paper(
  id="xiao2018",
  title="Dynamical Isometry and a Mean Field Theory of CNNs: How to Train 10,000-Layer "
        "Vanilla Convolutional Neural Networks",
  citation="L. Xiao, Y. Bahri, J. Sohl-Dickstein, S. S. Schoenholz, J. Pennington. ICML 2018. "
           "arXiv:1806.05393",
  summary="critical tanh CNN: delta-orthogonal init trains deeper than Gaussian init",
  run=run, draw=draw))
