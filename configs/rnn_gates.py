"""Elman RNN vs LSTM vs GRU on the same long adding problem: which keeps a trained band.

    python -m experiments.sweep --config=configs/rnn_gates.py --workdir=runs/rnn_gates

The adding problem (`gradlab.data.sequences.adding_sampler`; chance 1/12) at T = 50, the
length where an SGD-trained tanh Elman RNN no longer learns it in a few hundred steps
(configs/rnn_adding.py). Three 1-layer, 32-unit recurrent models (``model.name``: elman
tanh, lstm, gru; orthogonal recurrent blocks at the traced ``init.spectral_radius``,
forget bias 0) trained with Adam for 600 steps of 32 fresh sequences, global-norm
clipping at 1 for all. Axes: 6 spectral radii log-spaced in [0.25, 4] (x) x 5 learning
rates in [3e-4, 3e-2] (y) x model.name (panels): 90 runs, 3 compiles. The through-time
plot (through_time.png) shows, per model, ||dL/dh_t|| at init against t.
Measured wall time on a shared 2-core CPU: 1 min 28 s with one lane per call; with
automatic chunks (30 lanes) 4.1 to 6.6 min while other jobs loaded the CPU (load ~3),
10 of 10 runs completed; results in docs/rnn.md.
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
  c.data.seq_len = 50
  c.data.batch_size = 32
  c.optimizer.name = "adam"
  c.optimizer.clip = 1.0
  c.train.steps = 600
  c.train.log_every = 50
  c.train.eval_size = 1024
  c.sweep.axes = make_axes({
    "init.spectral_radius": np.round(np.geomspace(0.25, 4.0, 6), 4).tolist(),
    "optimizer.learning_rate": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
    "model.name": ["elman", "lstm", "gru"],
  })
  return c
