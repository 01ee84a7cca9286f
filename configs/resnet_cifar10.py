"""BatchNorm ResNet vs normalization-free ResNet vs normalization-free with SkipInit.

    python -m experiments.sweep --config=configs/resnet_cifar10.py --workdir=runs/resnet_cifar10
    python -m experiments.sweep --config=configs/resnet_cifar10.py --config.quick=True \
        --workdir=runs/resnet_quick          # the CPU variant, on digits

The accelerator job (needs CIFAR-10 prepared in the TFDS data dir: see gradlab.data.loader):
ResNet-20 (He et al. 2016, Sec. 4.2; 16/32/64 channels, ReLU, He init scaled by sigma_w)
on CIFAR-10 with random crops and flips, SGD with momentum 0.9, batch 128, 2000 steps.
Axes: sigma_w (7, log-spaced in [0.25, 4]) x learning rate (7, log-spaced in [1e-3, 1])
for the map, x model.norm in {batch, none} x model.residual_init in {none, skipinit} for
the panels: one command, four panels, four compiles (BatchNorm + SkipInit comes free
with the product; the three of the study are batch/none, none/none, none/skipinit).

What to look for: BatchNorm makes the network invariant to the scale of every kernel
that feeds a norm, so its map barely depends on sigma_w; the normalization-free ResNet's
residual stream grows block by block (its variance is multiplied by about
1 + sigma_w^4 per block with He-scaled ReLU branches: doubling at sigma_w = 1), so large
sigma_w or lr explode; SkipInit (De & Smith 2020) starts every block as its shortcut,
which removes that growth (the stem, the projection shortcuts and the readout still
scale with sigma_w) and widens the trainable region without any normalization.

The quick variant (`--config.quick=True`, see `quick_overrides`): ResNet-20 of width 4
(4/8/16 channels) on sklearn's 8x8 digits (offline), batch 16, 200 steps, no
augmentation, sigma_w in {0.5, 0.71, 1, 1.41, 2} x learning rate in {0.003, ..., 0.3}
x the same 4 panels: 100 runs, four compiles, about 3.5 minutes on 2 CPU cores.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "resnet"
  c.model.depth = 20
  c.model.width = 16
  c.model.activation = "relu"
  c.model.norm = "batch"
  c.model.residual_init = "none"
  c.init.family = "he"
  c.init.sigma_b = 0.0
  c.data.name = "cifar10"
  c.data.batch_size = 128
  c.data.augment = "crop_flip"
  c.optimizer.name = "momentum"
  c.optimizer.momentum = 0.9
  c.train.steps = 2000
  c.train.log_every = 50
  c.train.eval_size = 2048
  c.sweep.axes = make_axes({
    "init.sigma_w": np.round(np.geomspace(0.25, 4.0, 7), 4).tolist(),
    "optimizer.learning_rate": np.round(np.geomspace(1e-3, 1.0, 7), 5).tolist(),
    "model.norm": ["batch", "none"],
    "model.residual_init": ["none", "skipinit"],
  })
  c.quick = False
  c.quick_overrides = make_axes({
    "data.name": "digits",
    "data.augment": "none",
    "data.batch_size": 16,
    "model.depth": 20,
    "model.width": 4,
    "train.steps": 200,
    "train.log_every": 10,
    "train.eval_size": 512,
    "sweep.axes": {
      "init.sigma_w": [0.5, 0.7071, 1.0, 1.4142, 2.0],
      "optimizer.learning_rate": [0.003, 0.01, 0.03, 0.1, 0.3],
      "model.norm": ["batch", "none"],
      "model.residual_init": ["none", "skipinit"],
    },
  })
  return c
