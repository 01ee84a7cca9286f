"""De & Smith, "Batch Normalization Biases Residual Blocks Towards the Identity Function in
Deep Networks" (NeurIPS 2020, arXiv:2002.10444).

The paper's claims used here (Abstract, Sec. 4 and Sec. 5): batch normalization makes deep
residual networks trainable because it downscales each residual branch at init; SkipInit,
a scalar gain alpha = 0 at init on every branch (x_{l+1} = x_l + alpha f(x_l)), does the
same without normalization and trains unnormalized ResNets (up to 1000 layers) that
diverge without it; batch-normalized networks can be trained at larger learning rates,
but when the batch size is small normalized and unnormalized (SkipInit) networks have
similar optimal learning rates.

gradlab's measure: one learning-rate scan (SGD, heavy-ball momentum 0.9, a small batch)
of its ResNet-20 without normalization, with and without SkipInit
(``model.residual_init``), and with BatchNorm as the reference (`_resnet`). Claims:

- `skipinit_max_trained_lr_ratio`: the largest learning rate at which the unnormalized
  ResNet trains, with SkipInit over without. The paper gives no such ratio (without
  SkipInit its deep unnormalized networks do not train at all), so the claim is the
  ordering: above 1.
- `skipinit_trained_share_gain`: the share of the grid that trains, with SkipInit minus
  without; above 0.
- `skipinit_over_batchnorm_best_lr`: the learning rate of the best test accuracy, SkipInit
  over BatchNorm, at the small batch: the paper says "similar", i.e. 1; the tolerance is a
  factor 3.2, one step of the half-decade grid (the finest ratio the grid resolves; chosen
  before running).
- `batchnorm_over_skipinit_max_trained_lr`: BatchNorm trains at least up to SkipInit's
  largest learning rate (ratio >= 1).

The paper's networks are Wide-ResNets on CIFAR-10 at depths 16 to 1000; the paper scale
here is ResNet-20 (16/32/64 channels) on CIFAR-10 at batch 64, the CPU variant ResNet-20
of width 4 on the offline 8x8 digits at batch 16 for 200 steps. The quick tolerances are
the paper scale's: the orderings have none, and the grid step bounds the lr ratio.
"""

from __future__ import annotations

import pandas as pd

from experiments.reproduce import figures
from experiments.reproduce._resnet import (
  draw_scan,
  fmt,
  lr_grid,
  lr_summary,
  ratio,
  regimes_text,
  resnet_config,
)
from experiments.reproduce.base import Context, Outcome, Paper, register
from experiments.reproduce.claims import judge

SOURCE = "Abstract, Sec. 4 and 5 (qualitative: SkipInit trains where the plain net diverges)"
GRID_STEP = 3.2  # the half-decade grid's ratio between neighbours (sqrt(10), rounded up)
VARIANTS = {"plain": ("none", "none"), "skipinit": ("none", "skipinit"),
            "batchnorm": ("batch", "none")}  # name -> (model.norm, model.residual_init)


def _scan(ctx: Context) -> dict[str, dict]:
  lrs = lr_grid(ctx)
  batch, steps = (64, 16, 8), (4000, 200, 10)
  unnormalized = ctx.sweep(resnet_config(ctx, {
    "optimizer.learning_rate": lrs, "model.residual_init": ["none", "skipinit"]},
    batch, steps), "unnormalized")
  normalized = ctx.sweep(resnet_config(ctx, {
    "optimizer.learning_rate": lrs, "model.norm": ["batch"]}, batch, steps), "batchnorm")
  rows = pd.concat([unnormalized.assign(norm="none"), normalized.assign(norm="batch")])
  residual = rows.get("model.residual_init", pd.Series("none", index=rows.index))
  rows = rows.assign(residual_init=residual.fillna("none").astype(str))
  return {name: lr_summary(rows[(rows["norm"] == norm) & (rows["residual_init"] == init)])
          for name, (norm, init) in VARIANTS.items()}


def run(ctx: Context) -> Outcome:
  scan = _scan(ctx)
  plain, skip, bn = scan["plain"], scan["skipinit"], scan["batchnorm"]
  lr_note = (f"largest trained lr: plain {fmt(plain['max_trained_lr'])}, SkipInit "
             f"{fmt(skip['max_trained_lr'])}, BatchNorm {fmt(bn['max_trained_lr'])}")
  tried = f"plain: {regimes_text(plain)}; SkipInit: {regimes_text(skip)}"
  claims = [
    judge("skipinit_max_trained_lr_ratio",
          "the unnormalized ResNet with SkipInit trains at larger learning rates than "
          "without it", SOURCE, 1.0, ratio(skip["max_trained_lr"], plain["max_trained_lr"]),
          0.0, "above", note=lr_note,
          why_failed=f"SkipInit did not extend the trained learning rates ({tried})"),
    judge("skipinit_trained_share_gain",
          "SkipInit raises the share of the learning-rate grid that trains", SOURCE, 0.0,
          skip["trained_share"] - plain["trained_share"], 0.0, "above",
          note=f"trained share: plain {plain['trained_share']:.2f}, SkipInit "
               f"{skip['trained_share']:.2f} ({tried})",
          why_failed=f"the trained shares were equal or lower with SkipInit ({tried})"),
    judge("skipinit_over_batchnorm_best_lr",
          "at a small batch, SkipInit's and BatchNorm's best learning rates are similar",
          "Abstract and Sec. 5 (similar optimal lrs when the batch size is small)", 1.0,
          ratio(skip["best_lr"], bn["best_lr"]), GRID_STEP, "factor",
          note=f"best-test-accuracy lr: SkipInit {fmt(skip['best_lr'])}, BatchNorm "
               f"{fmt(bn['best_lr'])}",
          why_failed="the best learning rates differ by more than one grid step"),
    judge("batchnorm_over_skipinit_max_trained_lr",
          "BatchNorm trains up to at least SkipInit's largest learning rate",
          "Abstract (batch-normalized networks can be trained with larger learning rates)",
          1.0, ratio(bn["max_trained_lr"], skip["max_trained_lr"]), 0.0, "at_least",
          note=lr_note, why_failed="BatchNorm's largest trained lr was below SkipInit's"),
  ]
  return Outcome(claims, {"scan": scan})


def draw(outcome: Outcome, path: str, ctx: Context) -> None:
  draw_scan(path, outcome.figure["scan"], list(VARIANTS), "plain",
            "SkipInit row trains further right",
            figures.title_of("de2020", "SkipInit without normalization", SOURCE, ctx.scale))


PAPER = register(Paper(
  id="de2020",
  title="Batch Normalization Biases Residual Blocks Towards the Identity Function in Deep "
        "Networks",
  citation="S. De, S. L. Smith. NeurIPS 2020. arXiv:2002.10444",
  summary="SkipInit trains an unnormalized ResNet at learning rates where it explodes "
          "without it",
  run=run, draw=draw))
