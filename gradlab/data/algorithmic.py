"""Algorithmic token tasks for Transformers, generated on device: copy, associative recall,
modular addition.

Inputs are integer token ids (B, T) (`gradlab.models.transformer` embeds them); every
task is a pure JAX ``sample(key, batch_size) -> (x, y)``, the `Task.sampler` that draws
each training minibatch inside the scan. ``x_train, y_train`` are one fixed draw of
`NUM_FIXED` examples (the eval slice), ``x_test, y_test`` another. Each task states its
chance-level loss, the loss of the best prediction that ignores the inputs:

| name | x (B, T) | y | V = outputs | model | chance |
| --- | --- | --- | --- | --- | --- |
| token_copy | s, SEP, s again | the copy, -1 before SEP | A + 1 | transformer_lm | log A |
| associative_recall | k1 v1 .. kn vn q | v of q, at T-1 | NK + NV + 1 | transformer_lm | log NV |
| modular_addition | (a, b) | (a + b) mod p, (B,) | p | transformer_classifier | log p |

(A = `COPY_SYMBOLS`, NK = `RECALL_KEYS`, NV = `RECALL_VALUES`, p = `MODULUS`; T =
``data.seq_len`` for the first two, 2 for modular addition.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab.data.loader import DATASETS, DataDir, Dataset, Task, make_dataset
from gradlab.registry import ConfigError

NUM_FIXED = 1024     # examples in the fixed train (eval) and test draws
COPY_SYMBOLS = 16    # token_copy: alphabet A; SEP is token A
RECALL_KEYS = 32     # associative_recall: key tokens 0 .. NK-1
RECALL_VALUES = 16   # value tokens NK .. NK+NV-1; PAD is token NK+NV
MODULUS = 97         # modular_addition: p (Power et al. 2022 use p = 97)

Sampler = Callable[[jax.Array, int], tuple[jax.Array, jax.Array]]


def copy_sampler(seq_len: int, symbols: int = COPY_SYMBOLS) -> Sampler:
  """Copy with a separator, as next-token prediction. n = T/2 symbols s drawn uniformly
  from A; x = (s_1 .. s_n, SEP, s_1 .. s_{n-1}); y = -1 (ignored) at the first n
  positions, then s_1 .. s_n: from SEP on, each position predicts the next symbol of the
  copy, which an induction head (Olsson et al. 2022) finds n positions back.

  Chance: the symbols are uniform and independent, so any prediction that ignores the
  first half scores log A on the counted positions.
  """
  n = seq_len // 2
  sep = symbols

  def sample(key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    s_BxN = jax.random.randint(key, (batch_size, n), 0, symbols)
    sep_Bx1 = jnp.full((batch_size, 1), sep, jnp.int32)
    x = jnp.concatenate([s_BxN, sep_Bx1, s_BxN[:, :-1]], axis=1)
    y = jnp.concatenate([jnp.full((batch_size, n), -1, jnp.int32), s_BxN], axis=1)
    return x.astype(jnp.int32), y.astype(jnp.int32)

  return sample


def recall_sampler(seq_len: int, keys: int = RECALL_KEYS, values: int = RECALL_VALUES
                   ) -> Sampler:
  """Associative recall (Ba et al. 2016, "Using Fast Weights to Attend to the Recent
  Past", Sec. 4.1; the token form of Fu et al. 2023, H3, Sec. 3.1). n = (T - 1) // 2
  distinct keys, each followed by its value (uniform over NV); then a query, one of the
  n keys; y = -1 except at the last position, whose label is the query's value. With an
  even T, position 0 is PAD.

  Chance: values are uniform and independent of everything a model could read without
  the query-key match, log NV.
  """
  n = (seq_len - 1) // 2
  pad = keys + values

  def sample(key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    kk, kv, kq = jax.random.split(key, 3)
    order_BxNK = jnp.argsort(jax.random.uniform(kk, (batch_size, keys)), axis=1)
    k_BxN = order_BxNK[:, :n]  # distinct keys
    v_BxN = keys + jax.random.randint(kv, (batch_size, n), 0, values)
    which_B = jax.random.randint(kq, (batch_size,), 0, n)
    rows = jnp.arange(batch_size)
    pairs = jnp.stack([k_BxN, v_BxN], axis=-1).reshape(batch_size, 2 * n)
    head = jnp.full((batch_size, seq_len - 2 * n - 1), pad, jnp.int32)
    x = jnp.concatenate([head, pairs, k_BxN[rows, which_B][:, None]], axis=1)
    y = jnp.full((batch_size, seq_len), -1, jnp.int32).at[:, -1].set(v_BxN[rows, which_B])
    return x.astype(jnp.int32), y

  return sample


def modular_addition_sampler(modulus: int = MODULUS) -> Sampler:
  """Modular addition as classification (Power et al. 2022, "Grokking", Sec. 2:
  a o b = (a + b) mod p with p = 97): x = (a, b) uniform over Z_p^2, y = (a + b) mod p.
  Fresh pairs every step, so this is the task without the held-out table split of
  grokking. Chance: y is uniform over p classes whatever one of a, b is, log p.
  """

  def sample(key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    x = jax.random.randint(key, (batch_size, 2), 0, modulus).astype(jnp.int32)
    return x, jnp.mod(x[:, 0] + x[:, 1], modulus).astype(jnp.int32)

  return sample


def _seq_len(data_cfg: Any, name: str, minimum: int, maximum: int | None = None) -> int:
  seq_len = int(data_cfg.seq_len) if data_cfg is not None else 20
  if seq_len < minimum or (maximum is not None and seq_len > maximum):
    bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
    raise ConfigError(f"config key 'data.seq_len' must be {bound} for dataset '{name}', "
                      f"got {seq_len}")
  return seq_len


def token_dataset(name: str, sampler: Sampler, num_outputs: int, chance: float,
                  seed: int) -> Dataset:
  """A Dataset of int32 tokens whose train/test arrays are two fixed draws of `sampler`
  (keys fold_in(PRNGKey(seed), 0) and 1) and whose Task generates every minibatch."""
  key = jax.random.PRNGKey(seed)
  draw = jax.jit(sampler, static_argnums=1)
  x_train, y_train = (np.asarray(a) for a in draw(jax.random.fold_in(key, 0), NUM_FIXED))
  x_test, y_test = (np.asarray(a) for a in draw(jax.random.fold_in(key, 1), NUM_FIXED))
  return make_dataset(name, x_train, y_train, x_test, y_test, num_outputs,
                      task=Task("cross_entropy", sampler, chance=chance),
                      standardize_x=False)


@DATASETS.register("token_copy")
def load_token_copy(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  del data_dir
  seq_len = _seq_len(data_cfg, "token_copy", 4)
  if seq_len % 2:
    raise ConfigError(f"config key 'data.seq_len' must be even for dataset 'token_copy', "
                      f"got {seq_len}")
  return token_dataset("token_copy", copy_sampler(seq_len), COPY_SYMBOLS + 1,
                       math.log(COPY_SYMBOLS), seed)


@DATASETS.register("associative_recall")
def load_associative_recall(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  del data_dir
  seq_len = _seq_len(data_cfg, "associative_recall", 3, 2 * RECALL_KEYS + 2)
  return token_dataset("associative_recall", recall_sampler(seq_len),
                       RECALL_KEYS + RECALL_VALUES + 1, math.log(RECALL_VALUES), seed)


@DATASETS.register("modular_addition")
def load_modular_addition(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """(a, b) -> (a + b) mod 97; ``data.seq_len`` does not apply (T = 2)."""
  del data_dir, data_cfg
  return token_dataset("modular_addition", modular_addition_sampler(), MODULUS,
                       math.log(MODULUS), seed)
