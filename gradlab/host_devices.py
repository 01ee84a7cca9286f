"""Every core on the CPU: as many host devices as the machine has cores.

XLA's CPU client shows ONE device by default, and one device runs a chunk's batched
matmuls on one core (README, Performance). With N host devices a sweep deals whole
chunks to them (`gradlab.sweep.deal`: each runs the one-device program on its own
chunks, compiled once and loaded for the others by `gradlab.sweep.relocate`), so the
rows are bit for bit those of one device at the same chunk size.

The entry points (`experiments.sweep`, `experiments.reproduce`,
`experiments.benchmark`) call `configure` before JAX starts its backends. It sets
``jax_num_cpu_devices``, which only changes the CPU client (on a GPU or TPU machine the
CPU devices are not used by the sweep):

- ``GRADLAB_HOST_DEVICES`` unset or ``auto``: one device per core this process may use;
- ``GRADLAB_HOST_DEVICES=N``: N devices (``1``: XLA's default single device);
- left alone whenever the user already chose: ``XLA_FLAGS`` names
  ``--xla_force_host_platform_device_count``, ``JAX_NUM_CPU_DEVICES`` is set, or JAX's
  backends have already started (a library caller that used JAX first).
"""

from __future__ import annotations

import logging
import os

from gradlab.registry import ConfigError

log = logging.getLogger("gradlab")

ENV = "GRADLAB_HOST_DEVICES"
XLA_COUNT_FLAG = "xla_force_host_platform_device_count"


def cores() -> int:
  """The cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def requested(value: str | None = None) -> int | None:
  """The host device count `value` (default: ``$GRADLAB_HOST_DEVICES``) asks for:
  'auto' or '' = `cores()`, a positive whole number = itself; None when the user chose
  elsewhere (``XLA_FLAGS``, ``JAX_NUM_CPU_DEVICES``). A bad value is a ConfigError."""
  if XLA_COUNT_FLAG in os.environ.get("XLA_FLAGS", "") or os.environ.get("JAX_NUM_CPU_DEVICES"):
    return None
  text = (os.environ.get(ENV, "") if value is None else value).strip().lower()
  if text in ("", "auto"):
    return cores()
  if not text.isdigit() or int(text) < 1:
    raise ConfigError(f"{ENV} must be 'auto' or a positive whole number (host CPU devices), "
                      f"got '{text}'")
  return int(text)


def configure(value: str | None = None) -> int | None:
  """Gives JAX's CPU client `requested(value)` devices, before its backends start.
  Returns the count set, or None when it left JAX alone."""
  import jax
  from jax._src import xla_bridge

  n = requested(value)
  if n is None:
    return None
  if xla_bridge.backends_are_initialized():
    if jax.config.jax_num_cpu_devices != n:
      log.info("JAX already started: host devices left at %d", jax.local_device_count("cpu"))
    return None
  jax.config.update("jax_num_cpu_devices", n)
  return n
