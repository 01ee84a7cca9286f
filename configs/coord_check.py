"""The coordinate check of muP against the standard parameterization (issue 20).

    python -m experiments.coord_check --config=configs/coord_check.py --workdir=runs/coord
    python -m experiments.coord_check --config=configs/coord_check.py --config.quick=True \\
        --workdir=runs/coord_quick                                  # the smoke size

A 4-layer ReLU MLP (He init) on MNIST-1D (generated offline), Adam at lr 1e-2, batch 64,
trained 10 steps at widths 64 .. 2048 under ``standard`` and ``mup`` (base width 64, so
the two are the same network at 64), 3 seeds each: the activation RMS of every
``dense_i`` (pre-activation) and of the readout's logits on a fixed batch of 256
training examples, and of their change since init, at steps 0 .. 10
(`gradlab.coord_check`). 12 compiled programs: 2 min 13 s wall on 2 shared CPU cores
(124 s of it compiling and training; results in docs/parameterizations.md, "Coordinate
check"). The widths, parameterizations, steps and seeds are the ``model.width`` and
``model.parameterization`` axes, ``train.steps`` and ``sweep.replicas``;
``experiments.sweep`` on this file trains the same grid without the check.

The quick variant (`--config.quick=True`): 2 layers at widths 16 and 64 (base 16),
3 steps, 2 seeds: 4 small programs, a smoke test.
"""

from gradlab.config import make_axes
from gradlab.defaults import base_config

WIDTHS = [64, 128, 256, 512, 1024, 2048]


def get_config():
  c = base_config()
  c.model.name = "mlp"
  c.model.depth = 4
  c.model.width = WIDTHS[0]
  c.model.base_width = WIDTHS[0]
  c.model.activation = "relu"
  c.init.family = "he"
  c.data.name = "mnist1d"
  c.data.batch_size = 64
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.train.steps = 10
  c.train.log_every = 1
  c.train.eval_size = 256
  c.train.layer_probes = False
  c.diagnostics.initial = "off"
  c.sweep.replicas = 3
  c.sweep.axes = make_axes({
    "model.parameterization": ["standard", "mup"],
    "model.width": WIDTHS,
  })
  c.quick = False
  c.quick_overrides = make_axes({
    "model.depth": 2,
    "model.width": 16,
    "model.base_width": 16,
    "data.batch_size": 32,
    "train.steps": 3,
    "sweep.replicas": 2,
    "sweep.axes": {
      "model.parameterization": ["standard", "mup"],
      "model.width": [16, 64],
    },
  })
  return c
