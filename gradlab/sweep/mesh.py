"""The device mesh ('grid', 'data'), moving chunks of lanes on and off it, and the few
multi-process steps a sweep needs.

One `jax.sharding.Mesh` over every device of every process: axis 'grid' carries
independent runs (the lanes of a chunk), axis 'data' carries data parallelism inside one
run (the minibatch is sharded over it and XLA inserts the gradient mean). With
``mesh.data = 1`` (the default) all devices are on 'grid'.

Multi-host (TPU VM pods, or several local processes): every process builds the same
grid and calls the same compiled function on global arrays made with
`jax.make_array_from_callback`, so each process only materializes its own shards; each
process then reads back, and writes, only the lanes its devices hold (`local_lanes`).
Decisions every process must agree on (which runs are done, which boundary runs were
stable) go through `gather_max`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gradlab.registry import ConfigError

GRID, DATA = "grid", "data"

# Set on Cloud TPU VMs (by the VM image or the TPU runtime); any one means "TPU here".
_TPU_ENV = ("TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID", "TPU_ACCELERATOR_TYPE",
            "CLOUD_TPU_TASK_ID", "MEGASCALE_COORDINATOR_ADDRESS")


def make_mesh(n_data: int = 1, devices: list[Any] | None = None) -> Mesh:
  """A (n_devices / n_data) x n_data mesh with axes ('grid', 'data') over `devices`
  (default: every device of every process)."""
  devices = list(devices if devices is not None else jax.devices())
  if n_data < 1 or len(devices) % n_data:
    raise ConfigError(f"config key 'mesh.data' ({n_data}) must divide the number of "
                      f"devices ({len(devices)})")
  shape = (len(devices) // n_data, n_data)
  try:  # topology-aware order on TPUs; a plain reshape elsewhere
    from jax.experimental import mesh_utils

    grid = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, NotImplementedError, AssertionError):
    grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, (GRID, DATA))


def grid_size(mesh: Mesh) -> int:
  return int(mesh.shape[GRID])


def lane_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (lane) axis over 'grid', replicated over 'data'."""
  return NamedSharding(mesh, PartitionSpec(GRID))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_constraint(mesh: Mesh) -> Callable[[jax.Array], jax.Array] | None:
  """For ``vmap(run, spmd_axis_name='grid')``: shards a minibatch's leading axis over
  'data' (None when the mesh has one device on 'data')."""
  if mesh.shape[DATA] == 1:
    return None

  def constrain(x: jax.Array) -> jax.Array:
    spec = PartitionSpec(DATA, *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

  return constrain


def lanes_program(run_fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
  """``vmap(run_fn, in_axes=(0, 0, None))`` over a chunk's lanes, laid out on `mesh`.

  With ``mesh.data = 1`` a `jax.shard_map` over 'grid' (each device runs the vmapped
  program on the lanes it holds); with data parallelism (``mesh.data > 1``) the vmap
  with ``spmd_axis_name='grid'``, partitioned by XLA, whose all-reduce of the gradient
  sums in another order than one device. A sweep on several devices with ``mesh.data =
  1`` uses neither across devices: it deals whole chunks to one-device meshes
  (`gradlab.sweep.deal`), because a multi-device module of this program rounds Adam's
  per-lane decay rates differently from a one-device one (docs/multi_device_numerics.md).
  """
  vmapped = jax.vmap(run_fn, in_axes=(0, 0, None), spmd_axis_name=GRID)
  if mesh.shape[DATA] > 1:
    return vmapped
  return jax.shard_map(jax.vmap(run_fn, in_axes=(0, 0, None)), mesh=mesh,
                       in_specs=(PartitionSpec(GRID), PartitionSpec(GRID), PartitionSpec()),
                       out_specs=PartitionSpec(GRID), check_vma=False)


def host_keys(seeds: Any) -> np.ndarray:
  """``vmap(jax.random.PRNGKey)`` of int32 `seeds`, computed on the host: no device work,
  so a chunk's dispatch never waits behind a chunk another device of the sweep's default
  device is running. The threefry key of a 32-bit seed s is [0, s] (as uint32); another
  PRNG implementation is computed by JAX."""
  seeds = np.asarray(seeds, np.int32)
  if str(jax.config.jax_default_prng_impl) != "threefry2x32":
    return np.asarray(jax.vmap(jax.random.PRNGKey)(seeds))
  return np.stack([np.zeros_like(seeds, np.uint32), seeds.astype(np.uint32)], axis=-1)


def to_global(tree: Any, sharding: NamedSharding) -> Any:
  """Host numpy arrays (identical on every process) -> global arrays with `sharding`."""

  def put(x: Any) -> jax.Array:
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(put, tree)


def local_lanes(tree: Any) -> tuple[np.ndarray, Any]:
  """(lane indices held by this process, the tree's rows for those lanes), sorted.

  Leaves are global arrays whose leading axis is the lane axis, sharded over 'grid'
  (and replicated over 'data', whose copies are read once).
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  n = leaves[0].shape[0]

  def shards_by_start(x: jax.Array) -> dict[int, tuple[int, Any]]:
    out: dict[int, tuple[int, Any]] = {}
    for shard in x.addressable_shards:
      start, stop, _ = (shard.index[0] if shard.index else slice(None)).indices(n)
      out.setdefault(start, (stop, shard))
    return out

  first = shards_by_start(leaves[0])
  lanes = (np.concatenate([np.arange(a, first[a][0]) for a in sorted(first)]) if first
           else np.zeros((0,), int))

  def rows(x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable:
      return np.asarray(x)[lanes]
    parts = shards_by_start(x)
    return np.concatenate([np.asarray(parts[a][1].data) for a in sorted(parts)])

  return lanes, jax.tree_util.tree_unflatten(treedef, [rows(x) for x in leaves])


def gather_max(values: np.ndarray) -> np.ndarray:
  """Elementwise max of `values` over all processes (itself with one process)."""
  values = np.asarray(values)
  if jax.process_count() == 1:
    return values
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(values)).max(axis=0)


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def tpu_environment() -> bool:
  """Whether this process runs on a Cloud TPU VM (an env var the TPU runtime sets, or a
  TPU device file)."""
  return any(os.environ.get(k) for k in _TPU_ENV) or bool(glob.glob("/dev/accel[0-9]*"))


def initialize_multihost(coordinator: str = "", num_processes: int = 0,
                         process_id: int = -1) -> None:
  """`jax.distributed.initialize`, before anything touches a device.

  On a TPU VM or pod slice, call it with no arguments: JAX finds the coordinator, the
  process count and this process's id itself. Elsewhere (several local processes, CPU
  clusters) give all three; CPU collectives then go through gloo.
  """
  given = [bool(coordinator), num_processes > 0, process_id >= 0]
  if any(given) and not all(given):
    raise ConfigError("multi-host: give --coordinator, --num_processes and --process_id "
                      "together (or none of them on a TPU VM, where JAX finds them)")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if all(given):
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  else:
    jax.distributed.initialize()
