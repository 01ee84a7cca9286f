"""Init families at unit scale, and the traced scales sigma_w, sigma_b applied on top.

Modules are built with UNIT-scale initializers; `scale_params` multiplies every kernel
by ``sigma_w`` and every bias by ``sigma_b`` afterwards. Both are traced numbers, so a
sweep over them never recompiles.

``sigma_w`` is the weight scale, not the variance: for the LeCun family the weights are
W = sigma_w * W_unit / sqrt(fan_in) with W_unit ~ N(0, 1), so Var[W] = sigma_w^2 / fan_in,
i.e. the paper's sigma_w2 (Poole et al. 2016, "Exponential expressivity in deep neural
networks through transient chaos", eq. 1) is ``sigma_w ** 2``. Biases are
b = sigma_b * N(0, 1).

Families (unit scale, before sigma_w):
- ``lecun``:      N(0, 1 / fan_in)
- ``he``:         N(0, 2 / fan_in)
- ``glorot``:     N(0, 2 / (fan_in + fan_out))
- ``orthogonal``: a random orthogonal matrix scaled by sqrt(max(1, fan_out / fan_in)) so
  that its rows (or columns) have unit norm; sigma_w = 1 preserves norms
  (Saxe et al. 2014, "Exact solutions to the nonlinear dynamics of learning").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax.core import unfreeze

from gradlab.registry import Registry

Initializer = Callable[..., jax.Array]
INIT_FAMILIES: Registry[Initializer] = Registry("init family")

INIT_FAMILIES.register("lecun")(jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"))
INIT_FAMILIES.register("he")(jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal"))
INIT_FAMILIES.register("glorot")(jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal"))
INIT_FAMILIES.register("orthogonal")(jax.nn.initializers.orthogonal(1.0))

unit_bias_init: Initializer = jax.nn.initializers.normal(1.0)


def scale_params(params: Any, sigma_w: jax.Array, sigma_b: jax.Array) -> Any:
  """Multiplies every 'kernel' leaf by sigma_w and every Dense 'bias' by sigma_b.

  Normalization layers' 'scale' leaves are left alone; their 'bias' leaves start at zero
  and so stay zero.
  """

  def scale(path: tuple[Any, ...], leaf: jax.Array) -> jax.Array:
    name = getattr(path[-1], "key", None)
    if name == "kernel":
      return leaf * sigma_w
    if name == "bias":
      return leaf * sigma_b
    return leaf

  return jax.tree_util.tree_map_with_path(scale, unfreeze(params))


def kernel_std(fan_in: int, sigma_w: float, family: str = "lecun", fan_out: int = 1) -> float:
  """The std a family's kernel entries have at scale sigma_w (used by tests and docs)."""
  var = {"lecun": 1.0 / fan_in, "he": 2.0 / fan_in, "glorot": 2.0 / (fan_in + fan_out)}
  return float(sigma_w * jnp.sqrt(var[family]))
