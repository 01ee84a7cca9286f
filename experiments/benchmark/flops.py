"""Matmul FLOP counts of an MLP training step, and the device's float32 matmul peak.

The count is the usual one for dense layers: a forward matmul of a (B, fan_in) batch by a
(fan_in, fan_out) kernel costs 2 * B * fan_in * fan_out FLOPs (a multiply and an add per
term), and the backward pass costs twice that (input gradient and kernel gradient), so a
training step costs 3 * 2 * B * sum(fan_in * fan_out). Biases, activations, the loss, the
optimizer and the probes are not counted (they are O(B * width), not O(B * width^2)), nor
the first layer's input gradient that autodiff skips (the count is slightly generous),
nor the eval-slice and test-set passes at the start and end of each run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def mlp_dims(input_dim: int, width: int, depth: int, num_classes: int
             ) -> list[tuple[int, int]]:
  """(fan_in, fan_out) of each Dense layer of gradlab's MLP: depth hidden, then readout."""
  dims = [(input_dim if i == 0 else width, width) for i in range(depth)]
  return dims + [(width if depth else input_dim, num_classes)]


def step_flops(dims: Sequence[tuple[int, int]], batch_size: int) -> int:
  """Forward plus backward matmul FLOPs of one training step of one run."""
  forward = 2 * batch_size * sum(fan_in * fan_out for fan_in, fan_out in dims)
  return 3 * forward


def sweep_flops(dims: Sequence[tuple[int, int]], batch_size: int, steps: int,
                points: int) -> int:
  """Matmul FLOPs of training every point of a grid for `steps` steps."""
  return step_flops(dims, batch_size) * steps * points


@dataclasses.dataclass
class MatmulPeak:
  """Best float32 GFLOP/s of a jitted square matmul, per size and overall."""

  best_gflops: float
  best_size: int
  gflops_by_size: dict[int, float]
  repeats: int


def matmul_peak(sizes: Sequence[int] = (1024, 2048, 4096), repeats: int = 5) -> MatmulPeak:
  """Times ``jit(a @ b)`` for n x n float32 operands, warmed up, best of `repeats`.

  The peak is the best GFLOP/s (2 * n^3 FLOPs per product) over all sizes: what the
  device's matmul library reaches on large operands, the ceiling gradlab is held to.
  """
  matmul = jax.jit(jnp.matmul)
  by_size: dict[int, float] = {}
  for n in sizes:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    matmul(a, b).block_until_ready()  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
      t0 = time.perf_counter()
      matmul(a, b).block_until_ready()
      best = min(best, time.perf_counter() - t0)
    by_size[int(n)] = 2.0 * n**3 / best / 1e9
    del a, b
  best_size = max(by_size, key=by_size.__getitem__)
  return MatmulPeak(by_size[best_size], best_size, by_size, repeats)
