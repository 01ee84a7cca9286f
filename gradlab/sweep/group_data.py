"""The datasets of a sweep's groups, loaded once and placed on the mesh once.

Groups that read the same data (the data section without the batch size and the
augmentation, which act per minibatch: `dataset_key`) share one loaded dataset and one
replicated copy on the mesh. A streamed group (``data.stream > 0``,
`gradlab.data.stream`) gets the stream, whose dataset holds the eval slice and test
split only.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections as mlc
import numpy as np

from gradlab.data import load_dataset
from gradlab.data.stream import open_stream
from gradlab.sweep import memory
from gradlab.sweep import mesh as mesh_lib
from gradlab.train import make_data_arrays


def dataset_key(cfg: mlc.ConfigDict) -> tuple[Any, ...]:
  """What a loaded dataset depends on: the data section without the batch size and
  augmentation (those act per minibatch)."""
  return tuple(sorted((k, v) for k, v in cfg.data.items()
                      if k not in ("batch_size", "augment")))


class GroupData:
  """Caches, per `dataset_key`, the loaded dataset, its stream and its arrays on `mesh`."""

  def __init__(self, mesh: Any, shared: GroupData | None = None):
    """`shared`: another GroupData whose loaded datasets and streams this one reuses
    (executors of one sweep on different devices)."""
    self.mesh = mesh
    self._datasets: dict[tuple[Any, ...], Any] = shared._datasets if shared else {}
    self._streams: dict[tuple[Any, ...], Any] = shared._streams if shared else {}
    self._on_mesh: dict[tuple[Any, ...], tuple[Any, int]] = {}

  def _key(self, gcfg: mlc.ConfigDict, streamed: bool) -> tuple[Any, ...]:
    return (*dataset_key(gcfg), int(gcfg.train.eval_size) if streamed else None)

  def dataset(self, gcfg: mlc.ConfigDict) -> Any:
    """The group's dataset; for a streamed group the stream's view of it."""
    if int(gcfg.data.stream):
      return self.stream(gcfg).dataset
    key = self._key(gcfg, False)
    if key not in self._datasets:
      self._datasets[key] = load_dataset(gcfg.data.name, gcfg.data.data_dir or None,
                                         data_cfg=gcfg.data)
    return self._datasets[key]

  def stream(self, gcfg: mlc.ConfigDict) -> Any:
    """The stream of a streamed group (opened once)."""
    key = self._key(gcfg, True)
    if key not in self._streams:
      self._streams[key] = open_stream(gcfg.data.name, gcfg.data.data_dir or None,
                                       gcfg.data, int(gcfg.train.eval_size))
    return self._streams[key]

  def on_mesh(self, gcfg: mlc.ConfigDict, dataset: Any) -> tuple[Any, int]:
    """(the group's data arrays replicated on the mesh, their bytes on the host)."""
    key = (*dataset_key(gcfg), int(gcfg.train.eval_size))
    if key not in self._on_mesh:
      host = jax.tree_util.tree_map(np.asarray,
                                    make_data_arrays(dataset, gcfg.train.eval_size))
      self._on_mesh[key] = (mesh_lib.to_global(host, mesh_lib.replicated(self.mesh)),
                            memory.tree_bytes(host))
    return self._on_mesh[key]
