"""Signal propagation through a deep, wide tanh MLP: order, chaos and the critical line.

    python -m experiments.train --config=configs/signal_propagation.py --workdir=runs/sp
    python -m experiments.sweep --config=configs/signal_propagation.py --workdir=runs/sp_map

A 40-layer, 256-wide tanh MLP on MNIST-1D (generated offline) with sigma_b^2 = 0.05, the
setting of Schoenholz et al. 2017 ("Deep information propagation", fig. 1), trained with
SGD. Its point sits ON the mean-field critical line: sigma_w = sqrt(sigma_w2*) with
chi_1(sigma_w2*, 0.05) = 1 (`gradlab.theory.critical_sigma_w2`; sigma_w ~ 1.327), where
gradients neither vanish nor explode through depth.

The first command trains that point once with every diagnostic on and writes
runs/sp/diagnostics.json (measured q^l, c^l, chi_1 per layer beside the mean-field
values, Jacobian singular values, the sharpness trace against 2/lr, explosion onset) and
runs/sp/dashboard.png; `--config.init.sigma_w=0.8` or `=3` shows the ordered (vanishing)
and chaotic (exploding) sides. The second sweeps 8 sigma_w log-spaced in [0.5, 4] x 4
learning rates in [1e-3, 1] (32 runs of 150 steps, one compile) and draws the regime map
with the critical line over it (the point's sweep axes are ignored by the first command).
Each command takes about a minute on a 2-core CPU.
"""

import numpy as np

from gradlab import theory
from gradlab.config import make_axes
from gradlab.defaults import base_config

SIGMA_B2 = 0.05


def get_config():
  c = base_config()
  c.model.depth = 32
  c.model.width = 256
  c.model.activation = "tanh"
  c.init.sigma_b = float(np.sqrt(SIGMA_B2))
  c.init.sigma_w = round(float(np.sqrt(theory.critical_sigma_w2("tanh", SIGMA_B2))), 4)
  c.data.name = "mnist1d"
  c.data.batch_size = 64
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.01
  c.train.steps = 150
  c.train.log_every = 10
  c.train.eval_size = 1024
  c.diagnostics.every = 0  # the sweep skips sharpness; experiments.train sets it to log_every
  c.sweep.axes = make_axes({
    "init.sigma_w": np.round(np.geomspace(0.5, 4.0, 8), 4).tolist(),
    "optimizer.learning_rate": [1e-3, 1e-2, 1e-1, 1.0],
  })
  return c
