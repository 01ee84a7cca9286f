"""Pre-LN vs Post-LN at initialization: the last layer's gradient norm against depth.

Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture", Theorem 1
(and Lemma 2): at initialization the gradient of the last FFN layer's weights W^{2,L}
satisfies ||dL/dW^{2,L}||_F <= O(d sqrt(ln d)) for Post-LN, independent of the depth L,
and <= O(d sqrt(ln d / L)) for Pre-LN, because Pre-LN's final LayerNorm divides by the
norm of a residual stream whose squared norm grows linearly in L (Lemma 2:
E||x_{L+1}||^2 >= (1 + L/2) d). On a log-log plot of gradient norm against depth the
slopes are about 0 (Post-LN) and -1/2 (Pre-LN).

Two ways to see it (`gradlab.viz.ln_depth` draws both):
- `last_layer_grad_norms` measures it directly (the test in tests/test_transformer.py
  and docs/transformer.md use it): ||dL/dW|| of the last block's ``mlp/down`` kernel for
  the loss of the last position of random sequences, averaged over initializations.
- `init_grad_by_depth` reads it from a sweep with ``model.depth`` and
  ``model.ln_position`` axes (configs/transformer_ln.py): each run's first logged
  ``grad_norm_by_layer`` (step 0, the initialization) of its last block.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from gradlab import results
from gradlab.models.init import INIT_FAMILIES
from gradlab.models.transformer import Block, Embed, Head

DEPTH_AXIS = "model.depth"
LN_AXIS = "model.ln_position"


def loglog_slope(depths: Sequence[float], values: Sequence[float]) -> float:
  """Least-squares slope of log(values) against log(depths)."""
  return float(np.polyfit(np.log(np.asarray(depths, float)),
                          np.log(np.asarray(values, float)), 1)[0])


class _DepthModel(NamedTuple):
  """The static parts of `last_layer_grad_norms`' model and data."""

  embed: Embed
  block: Block
  head: Head
  max_depth: int
  vocab: int
  seq_len: int
  batch: int
  embed_scale: float


def last_layer_grad_norms(depths: Sequence[int], ln_position: str, seeds: int = 16,
                          width: int = 32, heads: int = 4, vocab: int = 16, seq_len: int = 8,
                          batch: int = 8, embed_scale: float = 0.3, seed: int = 0
                          ) -> np.ndarray:
  """Per depth L in `depths`: the mean over `seeds` initializations of ||dL/dW|| for W the
  last block's ``mlp/down`` kernel, L the next-token cross-entropy at the last position
  of uniform random token sequences (`batch` per init; inits and data drawn from
  PRNGKey(`seed`)), for a unit-scale (sigma_w = 1)
  GELU Transformer LM with LayerNorm at `ln_position`. The token and position tables are
  scaled by `embed_scale` (the embedding's variance v_0 is what keeps Pre-LN's slope
  above -1/2 at small depth: with stream variance v_0 + c L the slope between L1 and L2
  is -1/2 log((v_0 + c L2) / (v_0 + c L1)) / log(L2 / L1)).

  The model is `gradlab.models.transformer`'s own Embed, Block and Head, composed as
  `Transformer` composes them, with the blocks run by a scan whose steps beyond L are
  the identity: depth is then a traced number and one compile serves every depth.
  """
  lecun = INIT_FAMILIES.get("lecun")
  model = _DepthModel(
    embed=Embed(vocab, width, learned_positions=True),
    block=Block(heads, 4, ln_position, "layer", qk_norm=False, causal=True, rotary=False,
                activation="gelu", use_bias=False, kernel_init=lecun, out_init=lecun),
    head=Head(vocab, ln_position == "pre", "layer", tied=False, pool="none", use_bias=False,
              kernel_init=lecun),
    max_depth=int(max(depths)), vocab=vocab, seq_len=seq_len, batch=batch,
    embed_scale=embed_scale)
  fn = jax.jit(jax.vmap(functools.partial(_last_kernel_grad_norm, model), (0, None)))
  keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
  return np.array([float(jnp.mean(fn(keys, jnp.int32(d)))) for d in depths])


def _last_kernel_grad_norm(model: _DepthModel, key: jax.Array, depth: jax.Array
                           ) -> jax.Array:
  """||dL/dW|| of block depth-1's ``mlp/down`` kernel for one initialization `key`."""
  k_embed, k_blocks, k_head, k_data = jax.random.split(key, 4)
  x = jax.random.randint(k_data, (model.batch, model.seq_len + 1), 0, model.vocab)
  inputs, target = x[:, :-1], x[:, -1]
  p_embed = jax.tree_util.tree_map(functools.partial(_scaled, model.embed_scale),
                                   model.embed.init(k_embed, inputs))
  h0, table = model.embed.apply(p_embed, inputs)
  p_blocks = jax.vmap(model.block.init, (0, None))(jax.random.split(k_blocks, model.max_depth),
                                                   h0)
  p_head = model.head.init(k_head, h0, table)
  loss = functools.partial(_last_position_loss, model)
  g = jax.grad(loss)(p_blocks, h0, p_head, table, target, depth)
  g = g["params"]["mlp"]["down"]["kernel"][depth - 1]
  return jnp.sqrt(jnp.sum(g**2))


def _scaled(scale: float, a: jax.Array) -> jax.Array:
  return a * scale


def _last_position_loss(model: _DepthModel, p_blocks: Any, h0: jax.Array, p_head: Any,
                        table: jax.Array, target: jax.Array, depth: jax.Array) -> jax.Array:
  """Cross-entropy at the last position after the first `depth` blocks."""
  step = functools.partial(_block_or_identity, model.block, depth)
  h, _ = jax.lax.scan(step, h0, (p_blocks, jnp.arange(model.max_depth)))
  logits = model.head.apply(p_head, h, table)
  return optax.softmax_cross_entropy_with_integer_labels(logits[:, -1], target).mean()


def _block_or_identity(block: Block, depth: jax.Array, h: jax.Array,
                       layer: tuple[Any, jax.Array]) -> tuple[jax.Array, None]:
  p, i = layer
  return jnp.where(i < depth, block.apply(p, h), h), None


def init_grad_by_depth(workdir: str, df: pd.DataFrame) -> pd.DataFrame:
  """Per run: its ln_position, depth and the step-0 gradient norm of its last block
  (``grad_norm_by_layer[0, -2]``, layer_names ending in block_{L-1}, head), read from
  the sweep's trajectory files."""
  init_norm: dict[int, float] = {}
  for path in results.chunk_files(workdir, results.TRAJECTORIES_DIR):
    with np.load(path, allow_pickle=False) as z:
      if "grad_norm_by_layer" not in z.files or z["grad_norm_by_layer"].ndim != 3:
        continue
      names = [str(n) for n in z["layer_names"]]
      col = max(i for i, n in enumerate(names) if n.startswith("block_"))
      for run_id, g in zip(z["run_id"], z["grad_norm_by_layer"][:, 0, col], strict=True):
        init_norm[int(run_id)] = float(g)
  out = df[["run_id", LN_AXIS, DEPTH_AXIS]].copy()
  out["init_last_block_grad_norm"] = [init_norm.get(int(r), np.nan) for r in out["run_id"]]
  return out.dropna()


def applies(axes: Sequence[str]) -> bool:
  """True for a sweep with ``model.depth`` and ``model.ln_position`` axes."""
  return DEPTH_AXIS in axes and LN_AXIS in axes
