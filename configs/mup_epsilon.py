"""Adam's epsilon at large width under muP: where it swamps the gradient, and Adam-atan2.

    python -m experiments.sweep --config=configs/mup_epsilon.py
    python -m experiments.sweep --config=configs/mup_epsilon.py --config.quick=True

Under muP the gradient of a hidden weight shrinks as 1/width (Yang et al. 2022), so a
fixed epsilon in Adam's m_hat / (sqrt(v_hat) + eps) ends up larger than sqrt(v_hat):
the update shrinks to m_hat / eps and those layers stop learning (Everett et al. 2024,
"Scaling Exponents Across Parameterizations and Optimizers", Sec. 6: "epsilon
underflow"). Their fixes: scale epsilon down with width, or drop it with Adam-atan2
(``optimizer.name='adam_atan2'``: 1.27 atan2(m_hat, sqrt(v_hat)), `gradlab.optim.adam_family`).

The map: the muP MLP of configs/mup_transfer.py (3 ReLU hidden layers on MNIST-1D, base
width 64, 400 steps) at Adam's transferred learning rate 2^-7, widths 64 -> 1024 (x)
against epsilon 1e-8 -> 1e-2 (y), Adam vs Adam-atan2 (panels; atan2 reads no epsilon,
so its column is the control): 5 x 5 x 2 = 50 runs, 10 compiles. Where epsilon reaches
the gradients' scale the Adam cells turn stalled, from a smaller epsilon the wider the
network; Adam-atan2 trains in every cell. The quick variant stops at width 256.
"""

from configs.mup_transfer import get_config as transfer_config
from gradlab.config import make_axes


def get_config():
  c = transfer_config()  # the same muP MLP, data and training
  c.model.parameterization = "mup"
  c.optimizer.learning_rate = 2.0 ** -7
  axes = {
    "model.width": [64, 128, 256, 512, 1024],
    "optimizer.eps": [1e-8, 1e-5, 1e-4, 1e-3, 1e-2],
    "optimizer.name": ["adam", "adam_atan2"],
  }
  c.sweep.axes = make_axes(axes)
  c.quick_overrides = make_axes({
    "train.steps": 250,
    "sweep.axes": {**axes, "model.width": [64, 128, 256]},
  })
  return c
