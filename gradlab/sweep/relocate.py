"""One compile for every device: a one-device executable loaded again for another device.

A PJRT executable is bound to the device it was compiled for, so dealing chunks to N
devices (`gradlab.sweep.deal`) used to compile the group's program N times. The machine
code does not depend on which device of a kind runs it: `to_device` serializes the
compiled program once and loads the same bytes for another device of the same client,
with a device assignment naming that device. The relocated executable is the same
binary, so its outputs are bit for bit the original's (tests hold this), and loading it
takes about a sixth of a compile (1.2 s against 7-9 s for the benchmark's `small`
program on the 2-core CPU).

It relies on `jax.experimental.serialize_executable`, whose pickled form names devices
by id; the unpickler here maps them to the target device. When serialization is not
supported (a backend without it), `to_device` returns None and the caller compiles.

An executable that JAX loaded from its persistent compilation cache cannot be relocated
on the CPU (its kernels are missing from the re-serialized form: the run fails with
"Function ... not found"), so `CacheHits` tells the caller whether a compile was a cache
hit, and the executor then compiles for each device instead (also a cache hit from the
second rerun on).
"""

from __future__ import annotations

import io
import logging
from typing import Any

import jax

log = logging.getLogger("gradlab")


def to_device(compiled: Any, device: Any) -> Any | None:
  """`compiled` (a one-device `jax.stages.Compiled`) loaded for `device`, or None when
  this backend cannot serialize executables."""
  from jax._src import compiler
  from jax._src.lib import xla_client as xc
  from jax.experimental import serialize_executable as se

  try:
    payload, in_tree, out_tree = se.serialize(compiled)
  except (ValueError, NotImplementedError, TypeError) as e:
    log.info("executables cannot be relocated on this backend (%s): compiling again", e)
    return None
  options = compiler.get_compile_options(num_replicas=1, num_partitions=1,
                                         device_assignment=[device], backend=device.client)
  devices = xc.DeviceList((device,))

  class _OnDevice(se._JaxPjrtUnpickler):
    def persistent_load(self, pid: Any) -> Any:
      if pid[0] == "device":
        return device
      if pid[0] == "exec":
        return self.backend.deserialize_executable(pid[1], executable_devices=devices,
                                                   compile_options=options)
      return super().persistent_load(pid)

  unloaded, args_info_flat, no_kwargs = _OnDevice(
    io.BytesIO(payload), device.client, [device]).load()
  return jax.stages.Compiled(unloaded.load(), [], in_tree.unflatten(args_info_flat),
                             out_tree, no_kwargs=no_kwargs)


class CacheHits:
  """Counts JAX's persistent-cache hits, so a caller can tell whether a compile loaded
  its executable from disk (`jax.monitoring`'s '/jax/compilation_cache/cache_hits')."""

  EVENT = "/jax/compilation_cache/cache_hits"
  count = 0
  _listening = False

  @classmethod
  def listen(cls) -> None:
    if not cls._listening:
      jax.monitoring.register_event_listener(cls._on_event)
      cls._listening = True

  @classmethod
  def _on_event(cls, event: str, **kwargs: Any) -> None:
    if event == cls.EVENT:
      cls.count += 1
