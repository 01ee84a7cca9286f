"""The XLA options gradlab compiles its run programs with: ``sweep.cpu_opt_level``.

On the CPU, XLA compiles each fused kernel of a program with LLVM at its backend
optimization level (XLA's default is 3). gradlab's run programs are hundreds of small
kernels (per-leaf optimizer updates, norms, the threefry draws of the init and of every
minibatch), so most of a compile is LLVM optimizing code that runs for microseconds.
Measured on the 2-core CPU on the benchmark's `small` program (depth 10, 64 lanes):
level 1 compiles in 4.8 s against 7.9 s at level 3 and runs as fast (2.2 s against
2.9 s; `large`: 22 s at both), and the training itself is bit for bit the same (every
loss, gradient norm and parameter); only the probes' update norms differ in the last
bit in some lanes. Level 0 compiles in 3.7 s but runs 3x slower and changes the
training numerics, so it is not offered as a default (the tests use it for speed).

The option applies to CPU executables only, and only where ``XLA_FLAGS`` does not set
the level itself (the environment wins). ``sweep.cpu_opt_level = 3`` compiles exactly as
``jax.jit`` does by default.
"""

from __future__ import annotations

import os
from typing import Any

OPT_FLAG = "xla_backend_optimization_level"
LEVELS = (0, 1, 2, 3)
XLA_DEFAULT_LEVEL = 3


def compiler_options(level: int, platform: str) -> dict[str, Any] | None:
  """The ``compiler_options`` of `jax.stages.Lowered.compile` for a run program compiled
  for `platform` at LLVM optimization `level`; None (XLA's own choice) off the CPU, at
  XLA's default level, or when ``XLA_FLAGS`` already names the level."""
  if platform != "cpu" or int(level) == XLA_DEFAULT_LEVEL:
    return None
  if OPT_FLAG in os.environ.get("XLA_FLAGS", ""):
    return None
  return {OPT_FLAG: int(level)}


def compile_lowered(lowered: Any, level: int, platform: str) -> Any:
  """`lowered` compiled with `compiler_options` (level, platform)."""
  return lowered.compile(compiler_options=compiler_options(level, platform))


def run_options(cfg: Any) -> dict[str, Any] | None:
  """`compiler_options` for the run programs of `cfg` on JAX's default backend (what
  `jax.jit(..., compiler_options=...)` takes: train_one, checkpointed and streamed runs)."""
  import jax

  return compiler_options(int(cfg.sweep.cpu_opt_level), jax.default_backend())
