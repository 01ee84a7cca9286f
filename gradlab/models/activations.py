"""Activation functions by name (the mean-field theory supports the same names)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradlab.registry import Registry

Activation = Callable[[jax.Array], jax.Array]
ACTIVATIONS: Registry[Activation] = Registry("activation")

ACTIVATIONS.register("linear")(lambda x: x)
ACTIVATIONS.register("tanh")(jnp.tanh)
ACTIVATIONS.register("relu")(jax.nn.relu)
# Exact (erf-based) GELU, the form the mean-field literature integrates.
ACTIVATIONS.register("gelu")(lambda x: jax.nn.gelu(x, approximate=False))
ACTIVATIONS.register("selu")(jax.nn.selu)
ACTIVATIONS.register("sigmoid")(jax.nn.sigmoid)
ACTIVATIONS.register("erf")(jax.scipy.special.erf)
ACTIVATIONS.register("softplus")(jax.nn.softplus)
ACTIVATIONS.register("swish")(jax.nn.swish)
