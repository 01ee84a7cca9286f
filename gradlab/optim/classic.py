"""SGD-like, sign-based and per-coordinate (non-Adam) optimizers, registered by name.

Every builder passes ``hp['learning_rate']`` (a traced scalar or a schedule) and its other
keys (see each `register` call) through ``optax.inject_hyperparams``. In the rules below
g is the gradient, p the parameter, lr the learning rate.
"""

from __future__ import annotations

import optax

from gradlab.optim.registry import Hparams, inject, register


@register("sgd", ["learning_rate"], "Robbins and Monro 1951")
def sgd(hp: Hparams) -> optax.GradientTransformation:
  """Plain gradient descent: p <- p - lr * g."""
  return inject(optax.sgd, learning_rate=hp["learning_rate"])


@register("momentum", ["learning_rate", "momentum"], "Polyak 1964")
def momentum(hp: Hparams) -> optax.GradientTransformation:
  """Heavy ball (Polyak 1964): m <- momentum * m + g; p <- p - lr * m."""
  return inject(optax.sgd, learning_rate=hp["learning_rate"], momentum=hp["momentum"])


@register("nesterov", ["learning_rate", "momentum"], "Sutskever et al. 2013")
def nesterov(hp: Hparams) -> optax.GradientTransformation:
  """Nesterov momentum (Sutskever et al. 2013 form): m <- momentum * m + g;
  p <- p - lr * (g + momentum * m)."""
  return inject(optax.sgd, learning_rate=hp["learning_rate"], momentum=hp["momentum"],
                nesterov=True)


@register("rmsprop", ["learning_rate", "decay", "eps"], "Tieleman and Hinton 2012")
def rmsprop(hp: Hparams) -> optax.GradientTransformation:
  """RMSProp (Tieleman and Hinton 2012, Coursera lecture 6.5):
  nu <- decay * nu + (1 - decay) * g^2; p <- p - lr * g / sqrt(nu + eps)
  (optax's form: eps inside the square root, nu starts at 0)."""
  return inject(optax.rmsprop, learning_rate=hp["learning_rate"], decay=hp["decay"],
                eps=hp["eps"])


@register("adagrad", ["learning_rate", "eps"], "Duchi et al. 2011", learning_rate=0.1)
def adagrad(hp: Hparams) -> optax.GradientTransformation:
  """Adagrad (Duchi, Hazan and Singer 2011, JMLR): G <- G + g^2 (G starts at 0.1);
  p <- p - lr * g / sqrt(G + eps). Paper-style lr 0.1."""
  return inject(optax.adagrad, learning_rate=hp["learning_rate"], eps=hp["eps"])


@register("adadelta", ["learning_rate", "decay", "eps", "weight_decay"], "Zeiler 2012",
          learning_rate=1.0, decay=0.9, eps=1e-6)
def adadelta(hp: Hparams) -> optax.GradientTransformation:
  """Adadelta (Zeiler 2012, "ADADELTA: an adaptive learning rate method", Algorithm 1),
  rho <- hp['decay']: E[g^2] <- rho E[g^2] + (1 - rho) g^2;
  dx = -sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g; E[dx^2] <- rho E[dx^2] + (1-rho) dx^2;
  p <- p + lr * dx (the paper has lr = 1)."""
  return inject(optax.adadelta, learning_rate=hp["learning_rate"], rho=hp["decay"],
                eps=hp["eps"], weight_decay=hp["weight_decay"])


@register("adafactor", ["learning_rate", "decay_rate", "weight_decay"],
          "Shazeer and Stern 2018", learning_rate=1e-2)
def adafactor(hp: Hparams) -> optax.GradientTransformation:
  """Adafactor (Shazeer and Stern 2018, "Adafactor: adaptive learning rates with
  sublinear memory cost", Algorithms 4-5): second moments with decay
  beta2_t = 1 - t^(-decay_rate), factored into row/column statistics for matrices whose
  both sides are >= 128 (static), update clipped to RMS 1, scaled by the parameter's RMS
  and by lr; no momentum. eps1 = 1e-30 is fixed (it is not the shared ``eps``).
  optax adds weight_decay * p AFTER the lr scaling (so it is not multiplied by lr)."""
  return inject(optax.adafactor, static_args=("min_dim_size_to_factor",),
                learning_rate=hp["learning_rate"], decay_rate=hp["decay_rate"],
                weight_decay_rate=hp["weight_decay"])


@register("lion", ["learning_rate", "b1", "b2", "weight_decay"], "Chen et al. 2023",
          learning_rate=1e-4, b1=0.9, b2=0.99)
def lion(hp: Hparams) -> optax.GradientTransformation:
  """Lion (Chen et al. 2023, "Symbolic discovery of optimization algorithms", Program 1):
  c = b1 * m + (1 - b1) * g; p <- p - lr * (sign(c) + weight_decay * p);
  m <- b2 * m + (1 - b2) * g. Paper defaults b1 0.9, b2 0.99, lr 3-10x below AdamW's."""
  return inject(optax.lion, learning_rate=hp["learning_rate"], b1=hp["b1"], b2=hp["b2"],
                weight_decay=hp["weight_decay"])


@register("signum", ["learning_rate", "momentum"], "Bernstein et al. 2018")
def signum(hp: Hparams) -> optax.GradientTransformation:
  """Signum (Bernstein et al. 2018, "signSGD: compressed optimisation for non-convex
  problems", Algorithm 2), beta <- hp['momentum']: m <- beta * m + (1 - beta) * g;
  p <- p - lr * sign(m)."""
  return inject(optax.signum, learning_rate=hp["learning_rate"], beta=hp["momentum"])


@register("sign_sgd", ["learning_rate"], "Bernstein et al. 2018")
def sign_sgd(hp: Hparams) -> optax.GradientTransformation:
  """signSGD (Bernstein et al. 2018, Algorithm 1): p <- p - lr * sign(g)."""
  return inject(optax.sign_sgd, learning_rate=hp["learning_rate"])


@register("lars", ["learning_rate", "momentum", "weight_decay"], "You et al. 2017",
          learning_rate=1.0)
def lars(hp: Hparams) -> optax.GradientTransformation:
  """LARS (You, Gitman and Ginsburg 2017, "Large batch training of convolutional
  networks", Algorithm 1): d = g + weight_decay * p; per parameter array the local rate
  is eta * ||p|| / ||d|| with trust coefficient eta = 0.001 (fixed);
  m <- momentum * m + lr * local_rate * d; p <- p - m. Paper-style global lr ~ 1-10."""
  return inject(optax.lars, learning_rate=hp["learning_rate"], momentum=hp["momentum"],
                weight_decay=hp["weight_decay"])
