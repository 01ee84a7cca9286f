"""Edge of stability: full-batch gradient descent sharpens until the sharpness reaches 2/lr.

    python -m experiments.train --config=configs/edge_of_stability.py --workdir=runs/eos

Full-batch gradient descent (`data.batch_size = 0`, sgd) with the MSE loss, as in Cohen
et al. 2021 ("Gradient descent on neural networks typically occurs at the edge of
stability"), on the synthetic 'teacher' task (2048 examples, 32 features, 10 classes)
with a 3-layer, 128-wide tanh MLP at lr = 0.2. The sharpness (top Hessian eigenvalue of
the full-batch loss, 20 power iterations) is measured every 20 steps for 2000 steps
(`--config.diagnostics.every=10` doubles the resolution and the time).
Progressive sharpening drives it from about 4 at init up to the stability threshold
2/lr = 10, where it stops rising and hovers while the loss keeps falling, non-monotonically.
runs/eos/sharpness.png draws the trace against 2/lr; diagnostics.json holds it under
"sharpness" (with "ratio_to_threshold"). About a minute on a 2-core CPU.
"""

from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.depth = 3
  c.model.width = 128
  c.model.activation = "tanh"
  c.data.name = "teacher"
  c.data.batch_size = 0  # full batch: gradient descent
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.2
  c.train.loss = "mse"
  c.train.steps = 2000
  c.train.log_every = 10
  c.train.eval_size = 0  # the eval slice is the whole training set
  c.diagnostics.every = 20
  c.diagnostics.power_iters = 20
  return c
