"""Mixed precision: where float16 stalls or diverges, and what loss scaling moves.

    python -m experiments.sweep --config=configs/mixed_precision.py --workdir=runs/mp
    python -m experiments.sweep --config=configs/mixed_precision.py --config.quick=True

The default job's tanh MLP (12 layers, 64 wide, MNIST-1D, Adam, 500 steps) computing in
``train.precision`` float32, bfloat16 or float16 (parameters, optimizer state and the
loss stay float32: `gradlab.precision`), each with and without dynamic loss scaling
(``optimizer.remedies = 'loss_scale'``: scale 2^15, halved and the step skipped on a
non-finite gradient, doubled after 2000 finite steps; `gradlab.optim.guards.loss_scale`),
over 8 weight scales sigma_w in [0.25, 8] x 8 learning rates in [1e-4, 10]: 384 runs,
six compiles. Deep tanh nets' gradients shrink (sigma_w < 1) or grow (sigma_w > 1)
geometrically with depth, so float16's range (6e-8 to 65504) is reached at both ends.
Results column ``final_loss_scale`` holds the scale at the end (NaN without the remedy)
and ``skipped_steps`` the steps it skipped. What the quick map shows: docs/mixed_precision.md.

The quick variant (`--config.quick=True`): 8 layers, 32 wide, 300 steps, 6 x 6 grid:
216 runs.
"""

import numpy as np

from configs.default import get_config as default_config
from gradlab.config import make_axes


def get_config():
  c = default_config()  # the default job's model, data and run length
  c.optimizer.name = "adam"
  c.sweep.chunk_size = 0  # chunks chosen from memory (the default job pins 40)
  c.sweep.axes = make_axes({
    "init.sigma_w": np.round(np.geomspace(0.25, 8.0, 8), 4).tolist(),
    "optimizer.learning_rate": np.round(np.geomspace(1e-4, 10.0, 8), 6).tolist(),
    "train.precision": ["float32", "bfloat16", "float16"],
    "optimizer.remedies": ["none", "loss_scale"],
  })
  c.quick_overrides = make_axes({
    "model.depth": 8,
    "model.width": 32,
    "train.steps": 300,
    "sweep.axes": {
      "init.sigma_w": np.round(np.geomspace(0.25, 8.0, 6), 4).tolist(),
      "optimizer.learning_rate": np.round(np.geomspace(1e-4, 10.0, 6), 6).tolist(),
      "train.precision": ["float32", "bfloat16", "float16"],
      "optimizer.remedies": ["none", "loss_scale"],
    },
  })
  return c
