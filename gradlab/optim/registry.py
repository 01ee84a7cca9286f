"""Base optimizers by name, each with its numeric hyperparameters traced.

An entry maps a dict of traced hyperparameters (the ``optimizer.*`` numbers of the
config: learning_rate, momentum, b1, b2, eps, weight_decay, decay) to an optax
transformation built through ``optax.inject_hyperparams``, so the learning rate and the
other numbers live in the optimizer state as data, not as compile-time constants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import optax

from gradlab.registry import Registry

Hparams = Mapping[str, jax.Array]
OptimizerBuilder = Callable[[Hparams], optax.GradientTransformation]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")


def _inject(fn: Callable[..., optax.GradientTransformation], **hparams: jax.Array):
  return optax.inject_hyperparams(fn)(**hparams)


@OPTIMIZERS.register("sgd")
def sgd(hp: Hparams) -> optax.GradientTransformation:
  """Plain gradient descent: p <- p - lr * g."""
  return _inject(optax.sgd, learning_rate=hp["learning_rate"])


@OPTIMIZERS.register("momentum")
def momentum(hp: Hparams) -> optax.GradientTransformation:
  """Heavy ball (Polyak 1964): m <- momentum * m + g; p <- p - lr * m."""
  return _inject(optax.sgd, learning_rate=hp["learning_rate"], momentum=hp["momentum"])


@OPTIMIZERS.register("nesterov")
def nesterov(hp: Hparams) -> optax.GradientTransformation:
  """Nesterov momentum (Sutskever et al. 2013 form): p <- p - lr * (g + momentum * m)."""
  return _inject(optax.sgd, learning_rate=hp["learning_rate"], momentum=hp["momentum"],
                 nesterov=True)


@OPTIMIZERS.register("adam")
def adam(hp: Hparams) -> optax.GradientTransformation:
  """Adam (Kingma and Ba 2015) with bias correction; uses b1, b2, eps."""
  return _inject(optax.adam, learning_rate=hp["learning_rate"], b1=hp["b1"], b2=hp["b2"],
                 eps=hp["eps"])


@OPTIMIZERS.register("adamw")
def adamw(hp: Hparams) -> optax.GradientTransformation:
  """AdamW (Loshchilov and Hutter 2019): Adam plus decoupled weight decay lr * wd * p."""
  return _inject(optax.adamw, learning_rate=hp["learning_rate"], b1=hp["b1"], b2=hp["b2"],
                 eps=hp["eps"], weight_decay=hp["weight_decay"])


@OPTIMIZERS.register("nadam")
def nadam(hp: Hparams) -> optax.GradientTransformation:
  """Nadam (Dozat 2016): Adam with a Nesterov look-ahead on the first moment."""
  return _inject(optax.nadam, learning_rate=hp["learning_rate"], b1=hp["b1"], b2=hp["b2"],
                 eps=hp["eps"])


@OPTIMIZERS.register("rmsprop")
def rmsprop(hp: Hparams) -> optax.GradientTransformation:
  """RMSProp (Tieleman and Hinton 2012): nu <- decay * nu + (1 - decay) * g^2;
  p <- p - lr * g / sqrt(nu + eps) (optax's form: eps inside the square root)."""
  return _inject(optax.rmsprop, learning_rate=hp["learning_rate"], decay=hp["decay"],
                 eps=hp["eps"])
