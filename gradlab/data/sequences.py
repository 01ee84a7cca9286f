"""Long-range sequence tasks, generated on device: adding, copy, temporal order; and
sequential MNIST-1D.

Every generated task is a pure JAX function ``sample(key, batch_size) -> (x, y)`` of
static sequence length T = ``data.seq_len``; it is the `Task.sampler` that draws every
training minibatch inside the scan (fresh sequences each step, nothing stored).
``x_train, y_train`` are one fixed draw of `NUM_FIXED` sequences (the eval slice the
regimes judge, and the labels a chance level could be read from), ``x_test, y_test``
another. Inputs are not standardized (their scale is part of the task). Each task states
its chance-level loss, the loss of the best prediction that ignores the inputs:

| name | input (T, D) | target | loss | chance |
| --- | --- | --- | --- | --- |
| adding | (T, 2) | sum of the 2 marked values, (1,) | squared_error | 1/12 |
| copy | (T, 10) one-hot | the K=5 first symbols, at the last K steps | cross_entropy | log 8 |
| temporal_order | (T, 8) one-hot | 4 classes: the order of X/Y | cross_entropy | log 4 |
| seq_mnist1d | (40, 1) | the digit | cross_entropy | label entropy |

The copy task needs ``model.readout='every'`` (a label per step); the others read the
last step.
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

NUM_FIXED = 1024          # sequences in the fixed train (eval) and test draws
COPY_SYMBOLS = 8          # copy task: data alphabet A
COPY_LENGTH = 5           # copy task: K symbols to remember
TEMPORAL_SYMBOLS = 8      # a, b, c, d (distractors), X, Y, B (begin), E (end)
_X, _Y, _BEGIN, _END = 4, 5, 6, 7

Sampler = Callable[[jax.Array, int], tuple[jax.Array, jax.Array]]


def adding_sampler(seq_len: int) -> Sampler:
  """The adding problem (Hochreiter & Schmidhuber 1997, Sec. 5, Experiment 4; the form of
  Le et al. 2015 and Arjovsky et al. 2016). x_t = (v_t, m_t): v_t ~ U[0, 1], m_t = 1 at
  exactly two steps, one in the first half [0, T//2) and one in the second [T//2, T),
  0 elsewhere; target y = sum_t m_t v_t, shape (1,).

  Chance: the best constant prediction is E[y] = 1, with squared_error loss
  0.5 * E[(y - 1)^2] = 0.5 * Var[y] = 0.5 * (1/12 + 1/12) = 1/12 (two independent
  U[0, 1] values, each of variance 1/12).
  """
  half = seq_len // 2

  def sample(key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    kv, k1, k2 = jax.random.split(key, 3)
    values_BxT = jax.random.uniform(kv, (batch_size, seq_len))
    first = jax.random.randint(k1, (batch_size,), 0, half)
    second = jax.random.randint(k2, (batch_size,), half, seq_len)
    marks_BxT = jax.nn.one_hot(first, seq_len) + jax.nn.one_hot(second, seq_len)
    y_Bx1 = jnp.sum(values_BxT * marks_BxT, axis=1, keepdims=True)
    return jnp.stack([values_BxT, marks_BxT], axis=-1), y_Bx1

  return sample


def copy_sampler(seq_len: int) -> Sampler:
  """The copy (memory) task (Hochreiter & Schmidhuber 1997, Sec. 5; the form of Arjovsky
  et al. 2016, "Unitary evolution RNNs", Sec. 4.1, with K = 5 symbols and total length
  T). Steps 0..K-1 show K symbols drawn uniformly from A = 8; then blanks; a delimiter
  at step T-K-1; blanks again. Labels: -1 (ignored) everywhere except the last K steps,
  whose labels are the K first symbols in order. Inputs are one-hot over A + 2 channels
  (symbols, blank = 8, delimiter = 9); the delay between the last shown and the first
  recalled symbol is T - 2K steps.

  Chance: guessing uniformly among the A symbols on the counted steps, log A = log 8
  (the best constant prediction, the symbols being uniform).
  """
  k, a = COPY_LENGTH, COPY_SYMBOLS
  blank, delim = a, a + 1

  def sample(key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    symbols_BxK = jax.random.randint(key, (batch_size, k), 0, a)
    tokens = jnp.full((batch_size, seq_len), blank, jnp.int32)
    tokens = tokens.at[:, :k].set(symbols_BxK).at[:, seq_len - k - 1].set(delim)
    labels = jnp.full((batch_size, seq_len), -1, jnp.int32).at[:, seq_len - k:].set(
      symbols_BxK)
    return jax.nn.one_hot(tokens, a + 2), labels

  return sample


def temporal_order_positions(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """[lo, hi] (inclusive) of the two relevant steps: Hochreiter & Schmidhuber's
  t1 in [10, 20], t2 in [50, 60] for T ~ 100, scaled to T: [T/10, T/5] and [T/2, 3T/5]."""
  t1 = (max(1, seq_len // 10), max(1, seq_len // 5))
  t2 = (seq_len // 2, max(seq_len // 2, (3 * seq_len) // 5))
  return t1, t2


def temporal_order_sampler(seq_len: int) -> Sampler:
  """Temporal order (Hochreiter & Schmidhuber 1997, Sec. 5, Experiment 6a; Pascanu et al.
  2013, Sec. 4.2). Step 0 is B, step T-1 is E, the others distractors a, b, c, d drawn
  uniformly, except two steps t1, t2 (`temporal_order_positions`) holding X or Y each.
  Class = 2 * [s(t1) = Y] + [s(t2) = Y]: XX = 0, XY = 1, YX = 2, YY = 3. Inputs one-hot
  over the 8 symbols. Chance: 4 balanced classes, log 4.
  """
  (lo1, hi1), (lo2, hi2) = temporal_order_positions(seq_len)

  def sample(key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    kd, k1, k2, ks = jax.random.split(key, 4)
    tokens = jax.random.randint(kd, (batch_size, seq_len), 0, 4)
    tokens = tokens.at[:, 0].set(_BEGIN).at[:, -1].set(_END)
    t1 = jax.random.randint(k1, (batch_size,), lo1, hi1 + 1)
    t2 = jax.random.randint(k2, (batch_size,), lo2, hi2 + 1)
    is_y_Bx2 = jax.random.bernoulli(ks, 0.5, (batch_size, 2))
    rows = jnp.arange(batch_size)
    tokens = tokens.at[rows, t1].set(jnp.where(is_y_Bx2[:, 0], _Y, _X))
    tokens = tokens.at[rows, t2].set(jnp.where(is_y_Bx2[:, 1], _Y, _X))
    label = 2 * is_y_Bx2[:, 0].astype(jnp.int32) + is_y_Bx2[:, 1].astype(jnp.int32)
    return jax.nn.one_hot(tokens, TEMPORAL_SYMBOLS), label

  return sample


def _seq_len(data_cfg: Any, name: str, minimum: int) -> int:
  seq_len = int(data_cfg.seq_len) if data_cfg is not None else 20
  if seq_len < minimum:
    raise ConfigError(f"config key 'data.seq_len' must be >= {minimum} for dataset "
                      f"'{name}', got {seq_len}")
  return seq_len


def generated_dataset(name: str, sampler: Sampler, task: Task, num_outputs: int,
                      seed: int) -> Dataset:
  """A Dataset whose train/test arrays are two fixed draws of `sampler` (train: key
  (seed, 0), test: key (seed, 1)) and whose Task generates every minibatch."""
  key = jax.random.PRNGKey(seed)
  draw = jax.jit(sampler, static_argnums=1)
  x_train, y_train = (np.asarray(a) for a in draw(jax.random.fold_in(key, 0), NUM_FIXED))
  x_test, y_test = (np.asarray(a) for a in draw(jax.random.fold_in(key, 1), NUM_FIXED))
  return make_dataset(name, x_train.astype(np.float32), y_train,
                      x_test.astype(np.float32), y_test, num_outputs,
                      task=task, standardize_x=False)


@DATASETS.register("adding")
def load_adding(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  del data_dir
  sampler = adding_sampler(_seq_len(data_cfg, "adding", 2))
  return generated_dataset("adding", sampler,
                           Task("squared_error", sampler, chance=1.0 / 12.0), 1, seed)


@DATASETS.register("copy")
def load_copy(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  del data_dir
  sampler = copy_sampler(_seq_len(data_cfg, "copy", 2 * COPY_LENGTH + 1))
  return generated_dataset("copy", sampler,
                           Task("cross_entropy", sampler, chance=math.log(COPY_SYMBOLS)),
                           COPY_SYMBOLS, seed)


@DATASETS.register("temporal_order")
def load_temporal_order(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  del data_dir
  sampler = temporal_order_sampler(_seq_len(data_cfg, "temporal_order", 10))
  return generated_dataset("temporal_order", sampler,
                           Task("cross_entropy", sampler, chance=math.log(4.0)), 4, seed)


@DATASETS.register("seq_mnist1d")
def load_seq_mnist1d(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """MNIST-1D (Greydanus & Kobak 2020) fed one value per step: x (N, 40, 1), 40 steps
  (``data.seq_len`` does not apply), standardized per position with train statistics as
  the `mnist1d` dataset is. Minibatches are sampled from the 4000 training sequences;
  chance is the label entropy (log 10)."""
  flat = DATASETS.get("mnist1d")(data_dir, seed, data_cfg)
  return flat._replace(name="seq_mnist1d", x_train=flat.x_train[..., None],
                       x_test=None if flat.x_test is None else flat.x_test[..., None])
