"""Random orthogonal matrices with no batched LAPACK QR in any vmapped program.

Why (issue 15, docs/jax_cpu_batched_qr_hang.md): on CPU, jaxlib's QR of a BATCH of matrices
(``lapack_sgeqrf_ffi``, reached by ``jnp.linalg.qr`` under ``vmap``) splits the batch into
tasks on XLA's intra-op thread pool, the same pool it runs on, and waits for them. When one
program holds two such QRs that run at once (the orthogonal init of an LSTM's or GRU's gate
blocks, vmapped over the lanes of a sweep chunk), every pool thread can end up waiting for
tasks that no free thread will run: the call never returns (jax/jaxlib 0.10.2, 2 cores). A
QR of ONE matrix takes no parallel path and never hangs.

So `qr` here is ``jnp.linalg.qr`` under ``jax.custom_batching.sequential_vmap``: unbatched it
IS ``jnp.linalg.qr`` (same LAPACK call, same bits); under ``vmap`` it becomes a loop
(``lax.map``) of single-matrix QRs, each bit-identical to the unbatched call, so a lane of a
vmapped init equals the same init run alone. The loop costs nothing measurable over the QRs
themselves (30 lanes x 4 QRs of 128 x 128 in 79 ms on a shared 2-core CPU with one OpenBLAS
thread).

`random_orthogonal` and `Orthogonal` repeat ``jax.random.orthogonal`` and
``jax.nn.initializers.orthogonal`` step for step with this `qr` (Mezzadri 2007, "How to
generate random matrices from the classical compact groups", sec. 5): Z with i.i.d. N(0, 1)
entries of shape (max(n, m), min(n, m)), Z = QR, Q's columns times sign(diag R) (which makes
the factorization unique, so the result is Haar-distributed on the Stiefel manifold: for any
orthogonal U, UZ has Z's law and factors as (UQ)R with the same R), transposed when n < m.
Same key, same shape: the same bits as jax's functions, so parameters are unchanged by the fix.

Reverse-mode autodiff does not pass through ``sequential_vmap`` (forward mode does); nothing
here is differentiated (an init draws from a key; the randomized SVD of
`gradlab.diagnostics.signal` is a measurement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import sequential_vmap

Array = jax.Array


@sequential_vmap
def _qr_one(a_MxN: Array) -> tuple[Array, Array]:
  q, r = jnp.linalg.qr(a_MxN)
  return q, r


def qr(a: Array) -> tuple[Array, Array]:
  """The reduced QR (q, r) of a matrix (M, N), or of each matrix of a stack (..., M, N), as
  ``jnp.linalg.qr``: the same numbers, but a stack, and any ``vmap`` over a call, is a loop
  of single-matrix QRs (no batched LAPACK QR, which can hang on CPU; see module doc)."""
  if a.ndim < 2:
    raise ValueError(f"qr needs a matrix or a stack of matrices; got shape {a.shape}")
  if a.ndim == 2:
    return _qr_one(a)
  q, r = jax.vmap(_qr_one)(a.reshape((-1, *a.shape[-2:])))
  return q.reshape((*a.shape[:-2], *q.shape[-2:])), r.reshape((*a.shape[:-2], *r.shape[-2:]))


def random_orthogonal(key: Array, n: int, m: int | None = None, dtype: Any = None) -> Array:
  """A Haar-random (n, m) matrix with orthonormal columns (n >= m) or rows (n < m):
  ``jax.random.orthogonal(key, n, (), dtype, m)`` bit for bit, with `qr` (module doc)."""
  m = n if m is None else m
  dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)
  z = jax.random.normal(key, (max(n, m), min(n, m)), dtype)
  q, r = qr(z)
  x = q * jnp.expand_dims(jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1)), -2)
  return x.mT if n < m else x


@dataclass(frozen=True)
class Orthogonal:
  """``jax.nn.initializers.orthogonal(scale, column_axis, dtype)`` with `qr`: called as
  ``init(key, shape, dtype)`` it returns the same bits. The shape is read as a matrix of
  prod(shape) / shape[column_axis] rows and shape[column_axis] columns (a conv kernel
  (k_1, ..., c_in, c_out) as (k_1 * ... * c_in) x c_out); the smaller side is orthonormal;
  then times `scale`."""

  scale: float = 1.0
  column_axis: int = -1
  dtype: Any = None

  def __call__(self, key: Array, shape: tuple[int, ...], dtype: Any = None) -> Array:
    dtype = self.dtype if dtype is None else dtype
    dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)
    if len(shape) < 2:
      raise ValueError("orthogonal initializer requires at least a 2D shape")
    if any(dim == 0 for dim in shape):
      return jnp.zeros(shape, dtype)
    n_cols = shape[self.column_axis]
    n_rows = math.prod(shape) // n_cols
    q = random_orthogonal(key, n_rows, n_cols, dtype)
    q = jnp.reshape(q, (*np.delete(shape, self.column_axis), n_cols))
    q = jnp.moveaxis(q, -1, self.column_axis)
    return jnp.array(self.scale, dtype) * q
