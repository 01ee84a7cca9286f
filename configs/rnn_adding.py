"""Elman tanh RNN on the adding problem: spectral radius x learning rate, with and without
global-norm clipping, at two sequence lengths, in one command.

    python -m experiments.sweep --config=configs/rnn_adding.py --workdir=runs/rnn_adding

A 1-layer, 32-unit tanh Elman RNN (orthogonal recurrent init scaled to the traced
``init.spectral_radius``; LeCun input kernels) reads the adding problem (Hochreiter &
Schmidhuber 1997; values U[0, 1] and two markers, target = the sum of the two marked
values, squared_error loss, chance 1/12) generated on device, and is trained with SGD
for 1000 steps of 32 fresh sequences. Axes: 8 spectral radii log-spaced in [0.5, 2.5]
(x) x 6 learning rates in [0.03, 1] (y) x ``optimizer.clip`` in {0 (off), 1 (global-norm
clipping at 1, Pascanu et al. 2013, Sec. 3.2)} x ``data.seq_len`` in {20, 50}: 192 runs,
4 compiles (the clip stage and T are static). Every logged step records ||dL/dh_t||
for every t (the through-time probe, `gradlab.models.rnn`): result columns
grad_h_ratio_init/_final/_max, and the sweep folder gets through_time.png.
Measured wall time on a shared 2-core CPU: 1 min 20 s; results in docs/rnn.md.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "elman"
  c.model.activation = "tanh"
  c.model.depth = 1
  c.model.width = 32
  c.model.readout = "last"
  c.init.sigma_w = 1.0
  c.init.sigma_b = 0.0
  c.data.name = "adding"
  c.data.seq_len = 20
  c.data.batch_size = 32
  c.optimizer.name = "sgd"
  c.train.steps = 1000
  c.train.log_every = 50
  c.train.eval_size = 1024
  c.sweep.axes = make_axes({
    "init.spectral_radius": np.round(np.geomspace(0.5, 2.5, 8), 4).tolist(),
    "optimizer.learning_rate": [0.03, 0.1, 0.2, 0.3, 0.6, 1.0],
    "optimizer.clip": [0.0, 1.0],
    "data.seq_len": [20, 50],
  })
  return c
