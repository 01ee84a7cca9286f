"""Box regression with unbounded targets: L2 explodes where smooth-L1 (Huber) does not.

    python -m experiments.sweep --config=configs/localization.py --workdir=runs/localization

The 'shapes' task (gradlab.data.shapes, generated offline: one of 4 shapes per noisy
32x32 image, its class and its tight box (x0, y0, x1, y1) in PIXELS) and the
'cnn_localizer' model (3 ReLU convs of 8 channels, each with stride 2, then a class
head and a box head on the flattened 4x4x8 features), He init scaled by sigma_w, plain
SGD, batch 16, 300 steps. The loss is cross-entropy + the box loss summed over the 4
coordinates (Fast R-CNN's multi-task loss with lambda = 1), with the box loss a static
axis: train.box_loss in {l2, huber} gives the two panels (two compiles). Axes: 5 weight
scales sigma_w in [0.25, 4] x 8 learning rates log-spaced in [1e-4, 1]: 80 runs, about
a minute on 2 CPU cores.

Girshick 2015 ("Fast R-CNN", Sec. 2.3) replaced L2 with smooth-L1 because with
unbounded regression targets L2 "can require careful tuning of learning rates in order
to prevent exploding gradients": the L2 gradient with respect to a box coordinate is the
error itself (tens of pixels here), the Huber one is at most 1. The L2 panel's exploding
and diverged cells start a decade or more lower in learning rate.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "cnn_localizer"
  c.model.depth = 3
  c.model.width = 8
  c.model.downsample = 3
  c.model.activation = "relu"
  c.init.family = "he"
  c.init.sigma_b = 0.0
  c.data.name = "shapes"
  c.data.batch_size = 16
  c.optimizer.name = "sgd"
  c.train.loss = "auto"  # the task's: 'localization'
  c.train.steps = 300
  c.train.log_every = 10
  c.train.eval_size = 1024
  c.sweep.axes = make_axes({
    "init.sigma_w": [0.25, 0.5, 1.0, 2.0, 4.0],
    "optimizer.learning_rate": np.round(np.geomspace(1e-4, 1.0, 8), 6).tolist(),
    "train.box_loss": ["l2", "huber"],
  })
  return c
