"""A plain tanh CNN's regime map moves with depth: the trained band in sigma_w narrows.

    python -m experiments.sweep --config=configs/cnn_digits.py --workdir=runs/cnn_digits

Plain convolutional stacks ('cnn': no normalization, no skips; 3x3 kernels, 8 channels,
two stride-2 convs, global average pool) of depth 2, 8 and 24 on sklearn's 8x8 digits
(generated offline), LeCun init (Gaussian, variance sigma_w^2 / fan_in) with
sigma_b = 0, plain SGD, batch 16. Axes: 9 weight scales sigma_w log-spaced in [0.25, 4]
x 5 learning rates in [0.01, 1] (the map), x depth (the panels): 135 runs of 300 steps,
three compiles (one per depth). About 6 minutes on 2 busy CPU cores.

Mean-field theory for CNNs (Xiao et al. 2018, "Dynamical Isometry and a Mean Field Theory
of CNNs") puts the tanh network's critical point at sigma_w = 1 (sigma_b = 0); away from
it gradients shrink or grow by chi_1 per layer, so a net of depth L trains only where
|log chi_1| is below about 1/L: the band around sigma_w = 1 narrows as depth grows.
`--config.init.family=delta_orthogonal` gives the paper's orthogonal kernels.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "cnn"
  c.model.width = 8
  c.model.kernel_size = 3
  c.model.downsample = 2
  c.model.activation = "tanh"
  c.init.family = "lecun"
  c.init.sigma_b = 0.0
  c.data.name = "digits"
  c.data.batch_size = 16
  c.optimizer.name = "sgd"
  c.train.steps = 300
  c.train.log_every = 10
  c.train.eval_size = 512
  c.sweep.axes = make_axes({
    "init.sigma_w": np.round(np.geomspace(0.25, 4.0, 9), 4).tolist(),
    "optimizer.learning_rate": [0.01, 0.03, 0.1, 0.3, 1.0],
    "model.depth": [2, 8, 24],
  })
  return c
