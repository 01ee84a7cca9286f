"""Learning-rate transfer across width: standard parameterization vs muP, Adam and SGD.

    python -m experiments.sweep --config=configs/mup_transfer.py --config.quick=True
    python -m experiments.sweep --config=configs/mup_transfer.py      # widths 64-1024

A 3-hidden-layer ReLU MLP on MNIST-1D (batch 64, 400 steps), He init, at widths
64 -> 1024 with base width 64 (``model.base_width``: there both parameterizations are
the same network), ``model.parameterization`` in {standard, mup}
(`gradlab.models.parameterization`), Adam and SGD, and learning rates 2^-14 .. 2^1 in
factors of 2 (one grid step = 1 in log2 units): 5 x 16 x 2 x 2 = 320 runs, 20 compiles.
Besides the regime map (width x learning rate per panel), the sweep writes
lr_transfer.png (final loss against learning rate, one curve per width) and report.md's
"Learning-rate transfer" table: the best learning rate per width and its drift and
spread in log2 units. Yang et al. 2022 (Tensor Programs V, Fig. 1 and Sec. 5) and
Everett et al. 2024 report muP's optimum staying put as the width grows while the
standard parameterization's moves (for Adam, down roughly as 1/width).

The quick variant runs here: widths 32 -> 256 (base 32), 250 steps: 256 runs.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config

LEARNING_RATES = [float(2.0 ** k) for k in range(-14, 2)]


def get_config():
  c = base_config()
  c.model.name = "mlp"
  c.model.depth = 3
  c.model.width = 64
  c.model.base_width = 64
  c.model.activation = "relu"
  c.init.family = "he"
  c.init.sigma_b = 0.0
  c.data.name = "mnist1d"
  c.data.batch_size = 64
  c.train.steps = 400
  c.train.log_every = 20
  c.train.eval_size = 1024
  axes = {
    "model.width": [64, 128, 256, 512, 1024],
    "optimizer.learning_rate": LEARNING_RATES,
    "model.parameterization": ["standard", "mup"],
    "optimizer.name": ["adam", "sgd"],
  }
  c.sweep.axes = make_axes(axes)
  c.quick_overrides = make_axes({
    "model.base_width": 32,
    "train.steps": 250,
    "sweep.axes": {**axes, "model.width": [32, 64, 128, 256]},
  })
  assert np.allclose(np.diff(np.log2(LEARNING_RATES)), 1.0)
  return c
