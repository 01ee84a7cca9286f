"""Multi-head self-attention with optional qk-layernorm and rotary positions, and its probes.

The pieces of a Transformer block that concern attention (`gradlab.models.transformer`
builds the block and the models):

- `SelfAttention`: query/key/value/out Dense projections (``query``, ``key``, ``value``,
  ``out``), scaled dot-product attention (Vaswani et al. 2017, "Attention is all you
  need", eq. 1: softmax(q k^T / sqrt(d_head)) v), an optional causal mask, optional
  qk-layernorm (a norm over the head dimension applied to q and k before the dot
  product: Dehghani et al. 2023, "Scaling Vision Transformers to 22 Billion
  Parameters", Sec. 2.1; Wortsman et al. 2023, "Small-scale proxies for large-scale
  Transformer training instabilities", Sec. 3.1), optional rotary positions.
- `apply_rotary`: rotary position embedding (Su et al. 2021, "RoFormer: Enhanced
  Transformer with Rotary Position Embedding", eq. 34).
- `NORMS`: the normalization layers by name (``layer``: LayerNorm, Ba et al. 2016;
  ``rms``: RMSNorm, Zhang & Sennrich 2019).

Probes (sown into ``intermediates``, one scalar per layer, read by `gradlab.train`):
``probe_attn_logit_max`` = max over batch, heads and allowed (query, key) pairs of
|q . k| / sqrt(d_head), the quantity whose growth Wortsman et al. 2023 (Sec. 3.1, fig. 3)
and Dehghani et al. 2023 tie to attention-entropy collapse; ``probe_attn_entropy`` = the
mean over batch, heads and queries of the attention distribution's entropy
-sum_j p_ij log p_ij (nats; log t for a uniform row over t keys).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradlab.models.parameterization import dense
from gradlab.registry import Registry

Initializer = Callable[..., jax.Array]

NORMS: Registry[Callable[..., nn.Module]] = Registry("norm")
NORMS.register("layer")(nn.LayerNorm)
NORMS.register("rms")(nn.RMSNorm)

ROTARY_BASE = 10000.0


def rotary_angles(positions_T: jax.Array, d_head: int, base: float = ROTARY_BASE) -> jax.Array:
  """The angles m * theta_i of RoPE, shape (T, d_head // 2).

  Su et al. 2021, eq. 34: theta_i = base^(-2 (i - 1) / d) for i = 1 .. d/2 and position m.
  """
  theta = base ** (-jnp.arange(0, d_head, 2, dtype=jnp.float32) / d_head)
  return positions_T.astype(jnp.float32)[:, None] * theta[None, :]


def apply_rotary(x_BxTxHxD: jax.Array, positions_T: jax.Array | None = None,
                 base: float = ROTARY_BASE) -> jax.Array:
  """Rotates each pair (x_{2i}, x_{2i+1}) of the head dimension by the angle m * theta_i.

  Su et al. 2021, eq. 34 (the interleaved-pair form): R_m is block diagonal with 2x2
  rotations, so ||R_m x|| = ||x|| and <R_m q, R_n k> = <q, R_{n-m} k> depends on the
  positions only through n - m (their eq. 16).

  Args:
    x_BxTxHxD: queries or keys; D (the head dimension) must be even.
    positions_T: integer positions m of the T rows; None means 0 .. T-1.
    base: the base of the angle frequencies (10000 in the paper).
  """
  t, d = x_BxTxHxD.shape[1], x_BxTxHxD.shape[-1]
  if d % 2:
    raise ValueError(f"rotary positions need an even head dimension, got {d}")
  pos = jnp.arange(t) if positions_T is None else positions_T
  ang_Tx1xK = rotary_angles(pos, d, base)[:, None, :]
  cos, sin = jnp.cos(ang_Tx1xK), jnp.sin(ang_Tx1xK)
  x_pairs = x_BxTxHxD.reshape(*x_BxTxHxD.shape[:-1], d // 2, 2)
  x0, x1 = x_pairs[..., 0], x_pairs[..., 1]
  rotated = jnp.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)
  return rotated.reshape(x_BxTxHxD.shape).astype(x_BxTxHxD.dtype)


def causal_mask(t: int) -> jax.Array:
  """(T, T) bool: query i may attend to key j iff j <= i."""
  return jnp.tril(jnp.ones((t, t), dtype=bool))


class SelfAttention(nn.Module):
  """Multi-head self-attention on (B, T, D) with `heads` heads of D // heads dimensions.

  Attributes:
    heads: number of heads; must divide the width D.
    causal: mask keys after the query (decoder) or not (encoder).
    qk_norm: normalize q and k over the head dimension before the dot product
      (Dehghani et al. 2023, Sec. 2.1), with the norm named by `norm`.
    norm: ``layer`` or ``rms`` (`NORMS`), used by qk_norm.
    rotary: rotate q and k by their positions (Su et al. 2021) after the qk norm.
    use_bias: biases on the four projections.
    kernel_init: unit-scale initializer of query, key, value.
    out_init: unit-scale initializer of the output projection (the builder passes the
      1/sqrt(2 depth) residual scaling through it, a static factor).
    bias_init: unit-scale bias initializer.
    multiplier: static forward multiplier of the four projections' kernels
      (``model.parameterization``: `gradlab.models.parameterization.dense`).
    logit_multiplier: static factor on the q.k / sqrt(d_head) logits (muP's 1/d
      attention relative to the base width: sqrt(base d_head / d_head)).
  """

  heads: int
  causal: bool
  qk_norm: bool = False
  norm: str = "layer"
  rotary: bool = False
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  out_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.normal(1.0)
  multiplier: float = 1.0
  logit_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
    b, t, d = x_BxTxD.shape
    if d % self.heads:
      raise ValueError(f"width {d} is not a multiple of heads {self.heads}")
    d_head = d // self.heads

    def project(name: str) -> jax.Array:
      y = dense(d, self.use_bias, self.multiplier, name, self.kernel_init,
                self.bias_init)(x_BxTxD)
      return y.reshape(b, t, self.heads, d_head)

    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = project("query"), project("key"), project("value")
    if self.qk_norm:
      q_BxTxHxK = NORMS.get(self.norm)(name="query_norm")(q_BxTxHxK)
      k_BxTxHxK = NORMS.get(self.norm)(name="key_norm")(k_BxTxHxK)
    if self.rotary:
      q_BxTxHxK, k_BxTxHxK = apply_rotary(q_BxTxHxK), apply_rotary(k_BxTxHxK)
    logits_BxHxTxT = jnp.einsum("bqhk,bshk->bhqs", q_BxTxHxK, k_BxTxHxK) / jnp.sqrt(d_head)
    if self.logit_multiplier != 1.0:
      logits_BxHxTxT = logits_BxHxTxT * self.logit_multiplier
    allowed_TxT = causal_mask(t) if self.causal else jnp.ones((t, t), dtype=bool)
    masked = jnp.where(allowed_TxT, logits_BxHxTxT, -jnp.inf)
    probs_BxHxTxT = jax.nn.softmax(masked, axis=-1)
    self.sow("intermediates", "probe_attn_logit_max",
             jnp.max(jnp.where(allowed_TxT, jnp.abs(logits_BxHxTxT), 0.0)))
    self.sow("intermediates", "probe_attn_entropy",
             jnp.mean(jnp.sum(jax.scipy.special.entr(probs_BxHxTxT), axis=-1)))
    y_BxTxHxK = jnp.einsum("bhqs,bshk->bqhk", probs_BxHxTxT, v_BxTxHxK)
    return dense(d, self.use_bias, self.multiplier, "out", self.out_init,
                 self.bias_init)(y_BxTxHxK.reshape(b, t, d))
