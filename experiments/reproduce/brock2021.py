"""Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image Recognition Without
Normalization" (ICML 2021, arXiv:2102.06171).

The claim used here (Sec. 4.1 and Fig. 2(a)): adaptive gradient clipping (AGC: each unit's
gradient G_i is rescaled to norm lambda ||W_i||* when ||G_i|| / ||W_i||* > lambda, with
||W_i||* = max(||W_i||, 1e-3)) lets normalizer-free ResNets train stably at large batch
sizes and correspondingly large learning rates, where they are unstable without it (the
paper's NFNets train at batch 4096 with lr 0.1 x 4096/256 = 1.6 and lambda = 0.01: the
official configuration, deepmind-research/nfnets/experiment_nfnets.py). The paper gives
no ratio of stable learning rates, so the claims are the ordering:

- `agc_stable_lr_gain`: the largest learning rate at which the unnormalized ResNet trains,
  with AGC over without: above 1;
- `agc_trained_share_gain`: the share of the learning-rate grid that trains, with AGC
  minus without: above 0.

gradlab's measure: one learning-rate scan (SGD, heavy-ball momentum 0.9) of its ResNet-20
without normalization (He init, no SkipInit: AGC clips the zero-initialized SkipInit
gains to lambda x 1e-3 per step), with ``optimizer.remedies`` '' and 'agc'
(`gradlab.optim.remedies.adaptive_clip`, lambda = ``optimizer.agc_clip`` = 0.01, the
paper's value). Differences from the paper: gradlab clips every parameter (the paper
leaves the final linear layer unclipped), and its ResNet has no scaled weight
standardization. Paper scale: ResNet-20 (16/32/64 channels) on CIFAR-10 at batch 1024;
the CPU variant: ResNet-20 of width 4 on the offline 8x8 digits at batch 64 for 200 steps.
The orderings carry no tolerance at either scale.
"""

from __future__ import annotations

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

SOURCE = ("Sec. 4.1 and Fig. 2(a) (AGC scales NF-ResNets to large batches and lrs; "
          "qualitative: gain > 1)")
AGC_CLIP = 0.01  # the paper's lambda at batch 1024 to 4096
VARIANTS = {"no clipping": "", "AGC": "agc"}  # name -> optimizer.remedies


def _scan(ctx: Context) -> dict[str, dict]:
  out = {}
  for i, (name, remedies) in enumerate(VARIANTS.items()):
    cfg = resnet_config(ctx, {"optimizer.learning_rate": lr_grid(ctx)}, (1024, 64, 8),
                        (2000, 200, 10))
    cfg.optimizer.remedies = remedies
    cfg.optimizer.agc_clip = AGC_CLIP
    out[name] = lr_summary(ctx.sweep(cfg, f"scan_{i}"))
  return out


def run(ctx: Context) -> Outcome:
  scan = _scan(ctx)
  plain, agc = scan["no clipping"], scan["AGC"]
  tried = (f"lambda {AGC_CLIP:g}; without: {regimes_text(plain)}; with AGC: "
           f"{regimes_text(agc)}")
  claims = [
    judge("agc_stable_lr_gain",
          "AGC raises the largest learning rate at which the unnormalized ResNet trains",
          SOURCE, 1.0, ratio(agc["max_trained_lr"], plain["max_trained_lr"]), 0.0, "above",
          note=f"largest trained lr: without {fmt(plain['max_trained_lr'])}, with AGC "
               f"{fmt(agc['max_trained_lr'])}",
          why_failed=f"AGC did not extend the trained learning rates ({tried})"),
    judge("agc_trained_share_gain",
          "AGC raises the share of the learning-rate grid that trains", SOURCE, 0.0,
          agc["trained_share"] - plain["trained_share"], 0.0, "above",
          note=f"trained share: without {plain['trained_share']:.2f}, with AGC "
               f"{agc['trained_share']:.2f}",
          why_failed=f"the trained share did not grow with AGC ({tried})"),
  ]
  return Outcome(claims, {"scan": scan})


def draw(outcome: Outcome, path: str, ctx: Context) -> None:
  draw_scan(path, outcome.figure["scan"], list(VARIANTS), "no clipping",
            "the AGC row trains further right",
            figures.title_of("brock2021", "adaptive gradient clipping", SOURCE, ctx.scale))


PAPER = register(Paper(
  id="brock2021",
  title="High-Performance Large-Scale Image Recognition Without Normalization",
  citation="A. Brock, S. De, S. L. Smith, K. Simonyan. ICML 2021. arXiv:2102.06171",
  summary="AGC widens the stable learning-rate range of an unnormalized ResNet",
  run=run, draw=draw))
