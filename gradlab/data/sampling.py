"""On-device minibatch sampling: a pure function of a key, usable inside lax.scan."""

from __future__ import annotations

import jax


def sample_batch(
  key: jax.Array, x: jax.Array, y: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array]:
  """Samples a minibatch uniformly WITH replacement, or returns the full batch.

  Pure, jittable and vmappable over `key` (and over x, y). `batch_size` is static (it
  sets a shape): close over it or mark it static under jit.

  Args:
    key: PRNG key.
    x: (N, *feature_shape) inputs on device.
    y: (N,) labels.
    batch_size: rows to draw. ``batch_size <= 0`` means full-batch gradient descent:
      (x, y) are returned unchanged and `key` is unused. A batch_size >= N still samples
      with replacement.

  Returns:
    (x[idx], y[idx]) with idx = jax.random.randint(key, (batch_size,), 0, N).
  """
  if batch_size <= 0:
    return x, y
  idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
  return x[idx], y[idx]
