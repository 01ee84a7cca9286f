"""The default job: where a deep tanh MLP trains, explodes, stalls or diverges on MNIST-1D.

    python -m experiments.sweep                       # this file, into runs/<time>-default
    python -m experiments.sweep --config=configs/default.py --workdir=runs/default

A 12-layer, 64-wide tanh MLP on MNIST-1D (generated offline), 10 weight scales sigma_w
log-spaced in [0.25, 8] x 8 learning rates log-spaced in [1e-4, 10] x {sgd, adam}:
160 runs of 500 steps, two compiles (one per optimizer). Under 3 minutes on 2 CPU cores.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.depth = 12
  c.model.width = 64
  c.model.activation = "tanh"
  c.data.name = "mnist1d"
  c.data.batch_size = 64
  c.train.steps = 500
  c.train.log_every = 10
  c.sweep.axes = make_axes({
    "init.sigma_w": np.round(np.geomspace(0.25, 8.0, 10), 4).tolist(),
    "optimizer.learning_rate": np.round(np.geomspace(1e-4, 10.0, 8), 6).tolist(),
    "optimizer.name": ["sgd", "adam"],
  })
  c.sweep.chunk_size = 40
  return c
