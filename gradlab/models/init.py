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
  ``orthogonal`` and ``delta_orthogonal`` draw with `gradlab.models.orthogonal.Orthogonal`:
  ``jax.nn.initializers.orthogonal`` bit for bit, but never a batched LAPACK QR under vmap
  (which can hang a CPU sweep; see that module).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax.core import unfreeze

from gradlab.config import register_keys
from gradlab.models.orthogonal import Orthogonal
from gradlab.registry import Registry

# The init section's own keys: the unit-scale family (`INIT_FAMILIES`) and the traced
# scales every model reads. ``sigma_w`` is the weight SCALE (a standard deviation
# multiplier: W = sigma_w * W_unit / sqrt(fan_in) for LeCun), not the variance sigma_w^2
# of the mean-field papers. Families that read more of the section (the recurrent
# family, per-part Transformer scales) declare those keys themselves.
INIT_KEYS: dict[str, Any] = register_keys(
  "init", dict(family="lecun", sigma_w=1.0, sigma_b=0.0), family="init",
  traced=("sigma_w", "sigma_b"), non_negative=("sigma_w", "sigma_b"))

Initializer = Callable[..., jax.Array]
INIT_FAMILIES: Registry[Initializer] = Registry("init family")

INIT_FAMILIES.register("lecun")(jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"))
INIT_FAMILIES.register("he")(jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal"))
INIT_FAMILIES.register("glorot")(jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal"))
INIT_FAMILIES.register("orthogonal")(Orthogonal(1.0))

unit_bias_init: Initializer = jax.nn.initializers.normal(1.0)


def scale_params(params: Any, hp: Mapping[str, jax.Array],
                 rule: Callable[[tuple[str, ...]], tuple[str, ...] | None] | None = None
                 ) -> Any:
  """Multiplies every parameter by the traced scales `rule(path)` names (short names,
  looked up in `hp`); the default rule is every 'kernel' x sigma_w and every 'bias' x
  sigma_b (`gradlab.models.registry.default_scale_rule`).

  Normalization layers' 'scale' leaves are left alone; their 'bias' leaves start at zero
  and so stay zero.
  """
  from gradlab.models.registry import default_scale_rule

  rule = rule or default_scale_rule

  def scale(path: tuple[Any, ...], leaf: jax.Array) -> jax.Array:
    names = rule(tuple(str(getattr(p, "key", p)) for p in path)) or ()
    for name in names:
      leaf = leaf * hp[name]
    return leaf

  return jax.tree_util.tree_map_with_path(scale, unfreeze(params))


def scale_by(sigma_w: Any, sigma_b: Any) -> dict[str, Any]:
  """The `hp` argument of `scale_params` for the default rule."""
  return {"sigma_w": sigma_w, "sigma_b": sigma_b}


def delta_orthogonal(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32
                     ) -> jax.Array:
  """Delta-orthogonal kernels at unit scale (Xiao et al. 2018, "Dynamical Isometry and a
  Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla Convolutional Neural
  Networks", Algorithm 1).

  A conv kernel of shape (k_1, ..., k_n, c_in, c_out) is zero everywhere except its
  centre tap (k_1 // 2, ..., k_n // 2), which holds a random orthogonal (c_in, c_out)
  matrix H: H H^T = I when c_in <= c_out (the paper's case: the map x -> x H preserves
  norms), H^T H = I otherwise. The paper's weight variance sigma_w^2 enters as the traced
  sigma_w multiplying this kernel (`scale_params`), so sigma_w = 1 is the isometric point.
  A Dense kernel (rank 2) gets the plain orthogonal init, as the ``orthogonal`` family.
  """
  orthogonal = Orthogonal(1.0)
  if len(shape) <= 2:
    return orthogonal(key, shape, dtype)
  *spatial, c_in, c_out = shape
  centre = tuple(k // 2 for k in spatial)
  return jnp.zeros(shape, dtype).at[centre].set(orthogonal(key, (c_in, c_out), dtype))


INIT_FAMILIES.register("delta_orthogonal")(delta_orthogonal)
