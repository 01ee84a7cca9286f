"""Chunks of lanes over a streamed train split (``data.stream > 0``; `gradlab.data.stream`).

The run's three parts (`gradlab.train.RunParts`) are vmapped over lanes and jitted
apart: ``start`` once, ``advance`` once per segment with that segment's examples as its
data argument (one compile for every full segment, one more for a shorter last one),
then ``finish``. The outputs equal the composed run's when the segment holds the whole
split (tests hold this), so rows and trajectories are written exactly as in memory.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from gradlab.compile_options import compiler_options
from gradlab.data import stream as stream_lib
from gradlab.sweep import mesh as mesh_lib
from gradlab.train import DataArrays, Run


class StreamedRunner:
  """Compiled start / advance / finish of one group, and the segment loop."""

  def __init__(self, run: Run, cfg: mlc.ConfigDict, stream: Any,
               base_data: DataArrays, mesh: Any):
    self.run, self.stream, self.base, self.mesh = run, stream, base_data, mesh
    self.size = int(cfg.data.stream)
    self.seed = int(cfg.train.seed)
    self.blocks = stream_lib.blocks_per_segment(
      self.size, int(cfg.data.batch_size), int(cfg.train.log_every), run.diag_blocks)
    self._replicated = mesh_lib.replicated(mesh)
    parts = run.parts
    self._options = compiler_options(int(cfg.sweep.cpu_opt_level),
                                     mesh.devices.flat[0].platform)
    self._start = jax.jit(jax.vmap(lambda hp, k, d: parts(hp, k, d).start(),
                                   in_axes=(0, 0, None)), compiler_options=self._options)
    self._advance: dict[int, Any] = {}
    self._finish = jax.jit(jax.vmap(
      lambda hp, k, d, c, o, l0: parts(hp, k, d).finish(c, o, l0),
      in_axes=(0, 0, None, 0, 0, 0)), compiler_options=self._options)

  def _advance_fn(self, n_blocks: int) -> Any:
    if n_blocks not in self._advance:
      parts = self.run.parts
      self._advance[n_blocks] = jax.jit(jax.vmap(
        lambda hp, k, d, c, first: parts(hp, k, d).advance(c, first, n_blocks),
        in_axes=(0, 0, None, 0, None)), compiler_options=self._options)
    return self._advance[n_blocks]

  def _placed(self, x: np.ndarray, y: np.ndarray) -> DataArrays:
    host = self.base._replace(x_train=np.asarray(x), y_train=np.asarray(y))
    return mesh_lib.to_global(jax.tree_util.tree_map(np.asarray, host), self._replicated)

  def segment_plan(self) -> list[np.ndarray]:
    """The train indices of every segment of a chunk (`stream_lib.segment_indices`)."""
    n_segments = max(1, -(-self.run.n_logs // self.blocks))
    return [stream_lib.segment_indices(self.stream.num_train, self.size, s, self.seed)
            for s in range(n_segments)]

  def __call__(self, hp: Any, keys: Any) -> Any:
    """The trajectories of one chunk of lanes (global arrays, lanes on 'grid'). The
    pipeline reads segment s + 1 (and puts it on device) while segment s trains: JAX
    returns from a dispatch before the device finishes."""
    segments = self.stream.segments(self.segment_plan())
    data = self._placed(*next(segments))
    carry, initial_loss = self._start(hp, keys, data)
    outs, first = [], 0
    while first < self.run.n_logs:
      n = min(self.blocks, self.run.n_logs - first)
      carry, out = self._advance_fn(n)(hp, keys, data, carry, first)
      outs.append(out)
      first += n
      if first < self.run.n_logs:
        data = self._placed(*next(segments))
    if hasattr(segments, "close"):
      segments.close()  # a grain feed stops its workers
    joined = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=1), *outs) if (
      outs) else outs
    return self._finish(hp, keys, data, carry, joined, initial_loss)
