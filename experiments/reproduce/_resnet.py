"""Shared by the normalization-free ResNet reproductions (de2020: SkipInit, brock2021:
AGC): gradlab's CIFAR ResNet (`gradlab.models.resnet`, He et al. 2016) trained with SGD
and heavy-ball momentum over a learning-rate grid, and what the papers read from such a
grid: per variant, which learning rates train, the largest one that does, the share of
the grid that does, and the learning rate with the best test accuracy.

A run "trains" when gradlab's regime label is 'trained' or 'catapult' (the loss fell to
below its tolerance of the start, possibly after a spike: `gradlab.regimes`); 'stalled',
'exploding' and 'diverged' runs do not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from experiments.reproduce import figures
from experiments.reproduce.base import Context
from gradlab.config import make_axes
from gradlab.defaults import base_config

TRAINED = ("trained", "catapult")
LR_KEY = "optimizer.learning_rate"


def resnet_config(ctx: Context, axes: dict[str, list[Any]], batch: tuple[int, int, int],
                  steps: tuple[int, int, int]):
  """gradlab's unnormalized ResNet (ReLU, He init, no biases at init, SGD + momentum 0.9):
  the paper scale is ResNet-20 of width 16 on CIFAR-10, the CPU variant ResNet-20 of
  width 4 on the offline 8x8 digits, the smoke size ResNet-8 of width 2. `batch` and
  `steps` are (paper, quick, smoke)."""
  c = base_config()
  c.model.name = "resnet"
  c.model.depth = ctx.pick(20, 20, 8)
  c.model.width = ctx.pick(16, 4, 2)
  c.model.activation = "relu"
  c.model.norm = "none"
  c.model.residual_init = "none"
  c.init.family = "he"
  c.init.sigma_b = 0.0
  c.data.name = ctx.pick("cifar10", "digits", "digits")
  c.data.augment = ctx.pick("crop_flip", "none", "none")
  c.data.batch_size = ctx.pick(*batch)
  c.optimizer.name = "momentum"
  c.optimizer.momentum = 0.9
  c.train.steps = ctx.pick(*steps)
  c.train.log_every = ctx.pick(50, 10, 5)
  c.train.eval_size = ctx.pick(2048, 512, 64)
  c.train.layer_probes = False
  c.sweep.axes = make_axes(axes)
  return c


def lr_grid(ctx: Context) -> list[float]:
  """Half-decade learning rates (the CPU variant and the smoke size use fewer)."""
  paper = np.round(np.geomspace(1e-3, 10.0, 9), 5).tolist()
  return ctx.pick(paper, [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0], [0.01, 1.0])


def lr_summary(rows: pd.DataFrame) -> dict[str, Any]:
  """One variant's learning-rate scan: the lrs (ascending), their regimes, whether each
  trained, test accuracies, the largest trained lr (None if none trained), the trained
  share and the lr of the best test accuracy among trained runs (None if none)."""
  rows = rows.sort_values(LR_KEY)
  lrs = rows[LR_KEY].astype(float).to_numpy()
  regimes = rows["regime"].astype(str).tolist()
  trained = np.array([r in TRAINED for r in regimes])
  accuracy = rows["test_accuracy"].astype(float).to_numpy()
  accuracy = np.nan_to_num(accuracy, nan=0.0)
  best = float(lrs[trained][np.argmax(accuracy[trained])]) if trained.any() else None
  return {"lr": lrs.tolist(), "regime": regimes, "trained": trained.astype(float).tolist(),
          "accuracy": accuracy.tolist(),
          "max_trained_lr": float(lrs[trained].max()) if trained.any() else None,
          "trained_share": float(trained.mean()), "best_lr": best}


def ratio(a: float | None, b: float | None) -> float | None:
  """a / b, None unless both are given and b > 0."""
  return a / b if a is not None and b is not None and b > 0 else None


def fmt(lr: float | None) -> str:
  return "none" if lr is None else f"{lr:g}"


def regimes_text(summary: dict[str, Any]) -> str:
  """'lr: regime' for every lr of a scan, e.g. '0.01 trained, 0.1 stalled'."""
  return ", ".join(f"{lr:g} {r}" for lr, r in zip(summary["lr"], summary["regime"], strict=True))


def draw_scan(path: str, scan: dict[str, Any], names: list[str], baseline: str,
              expectation: str, title: str) -> None:
  """The figure of a variant x learning-rate scan: the regime of every (variant, lr)
  with `expectation` (the paper's, in words) in the panel title, and each variant's test
  accuracy (0 where it did not train) with the `baseline` variant's largest trained lr
  marked."""
  base_max = scan[baseline]["max_trained_lr"]
  regimes = {"kind": "regimes", "x": scan[names[0]]["lr"], "y": list(range(len(names))),
             "regimes": [scan[n]["regime"] for n in names], "logx": True,
             "xlabel": "learning rate", "ylabel": "variant", "yticklabels": names,
             "title": f"gradlab's regimes (paper: {expectation})"}
  accuracy = {"kind": "curves", "logx": True, "xlabel": "learning rate",
              "ylabel": "test accuracy", "title": "test accuracy (0 where not trained)",
              "series": [{"label": n, "x": scan[n]["lr"],
                          "y": [a * t for a, t in zip(scan[n]["accuracy"], scan[n]["trained"],
                                                      strict=True)]} for n in names],
              "refs": [{"label": f"{baseline}: largest trained lr", "x": base_max}]
              if base_max is not None else []}
  figures.draw_panels(path, title, [regimes, accuracy])
