"""Which optimizer, and does global-norm clipping, keep a deep tanh MLP out of explosion?

    python -m experiments.sweep --config=configs/optimizers.py --workdir=runs/optimizers

An 8-layer, 64-wide tanh MLP on MNIST-1D; 6 sigma_w log-spaced in [0.25, 8] x 7 learning
rates log-spaced in [1e-4, 10]; optimizers sgd, momentum, nesterov, adam, nadam, rmsprop,
lion, gadam, each without clipping (clip = 0) and with global-norm clipping at 1
(Pascanu et al. 2013): 16 groups, 672 runs of 300 steps. Writes one regime-map panel per
(optimizer, clip), stable_lr.png (one panel per optimizer: the largest learning rate that
trains and the largest that does not blow up, against sigma_w, clip as marker), report.md
opening with "Which optimizer to choose", and index.html. 163 s on a 2-core CPU.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.depth = 8
  c.model.width = 64
  c.model.activation = "tanh"
  c.data.name = "mnist1d"
  c.data.batch_size = 64
  c.train.steps = 300
  c.train.log_every = 10
  c.optimizer.average_start = 150  # gadam: average the second half of training
  c.sweep.axes = make_axes({
    "init.sigma_w": np.round(np.geomspace(0.25, 8.0, 6), 4).tolist(),
    "optimizer.learning_rate": np.round(np.geomspace(1e-4, 10.0, 7), 6).tolist(),
    "optimizer.name": ["sgd", "momentum", "nesterov", "adam", "nadam", "rmsprop", "lion",
                       "gadam"],
    "optimizer.clip": [0.0, 1.0],
  })
  c.sweep.chunk_size = 42
  return c
