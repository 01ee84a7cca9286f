"""A 20-second check that an install works: a tiny grid on the synthetic 'teacher' task.

    python -m experiments.sweep --config=configs/smoke.py --workdir=runs/smoke

2-layer width-16 tanh MLP, 4 sigma_w x 3 learning rates, adam, 50 steps, one compile.
"""

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.depth = 2
  c.model.width = 16
  c.data.name = "teacher"
  c.data.batch_size = 32
  c.optimizer.name = "adam"
  c.train.steps = 50
  c.train.log_every = 5
  c.train.eval_size = 512
  c.sweep.axes = make_axes({
    "init.sigma_w": [0.5, 1.0, 2.0, 4.0],
    "optimizer.learning_rate": [1e-3, 1e-1, 10.0],
  })
  return c
