"""Mixed precision: ``train.precision`` is the dtype the model computes in.

Parameters, optimizer state, the loss and the gradients handed to the optimizer stay
float32. `apply_model` (gradlab.step) casts the parameters and the inputs to the
compute dtype, runs the model, and casts its outputs back to float32, so the forward
and the backward pass (the cast's transpose brings each gradient back to float32) run
in the compute dtype, with its range: float16's largest finite value is 65504 and its
smallest positive one 2^-24 (about 6e-8), so large activations overflow to inf
(`diverged`) and small gradients underflow to zero (`stalled`); bfloat16 has float32's
range with 8 bits of mantissa (Micikevicius et al. 2018, "Mixed Precision Training";
Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep Learning Training").

The remedy is loss scaling (``optimizer.remedies = 'loss_scale'``,
`gradlab.optim.guards.loss_scale`): the loss is multiplied by a scale before the
backward pass and the gradients divided by it after, so small gradients live in
float16's range; the scale grows x2 after ``optimizer.loss_scale_period`` finite steps
and halves on a non-finite one, which is skipped.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradlab.registry import ConfigError

PRECISIONS: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
                              "float16": jnp.float16}


def compute_dtype(name: str) -> Any:
  """The jnp dtype of ``train.precision = name``, or a ConfigError naming the choices."""
  if name not in PRECISIONS:
    raise ConfigError(f"config key 'train.precision' is '{name}'; known: "
                      f"{', '.join(PRECISIONS)}")
  return PRECISIONS[name]


def cast_floats(tree: Any, dtype: Any) -> Any:
  """Every floating leaf of `tree` as `dtype` (integer leaves, e.g. tokens, unchanged)."""
  return jax.tree.map(
    lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x,
    tree)
