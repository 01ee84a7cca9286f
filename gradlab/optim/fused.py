"""Several optimizers in one compiled program: ``sweep.fuse_optimizers``.

Groups of a sweep that differ only in ``optimizer.name`` (e.g. the default job's sgd and
adam) compile one program each. With ``sweep.fuse_optimizers = True`` they share ONE
program whose optimizer is `build_fused`: every listed chain is built, each lane picks
its own by the traced ``hp['opt_index']`` (its optimizer's position in the list). Under
vmap a lane-dependent choice cannot branch, so every lane computes every chain's update
and keeps its own with a select: elementwise work per step for one compile less per
optimizer. Rows are those of the separate programs up to the rounding of the fused
code (the selected values are computed by the same operations; XLA may fuse them
differently, so chaotic lanes can end at other numbers in the last bits).

`unfusable` says why a group cannot take part: an optimizer that evaluates other
parameters than its last iterate (Gadam, schedule-free), a guard remedy (its skip count
lives in the chain's state), or a sharpness measurement (whose preconditioner is the
optimizer's own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax

from gradlab.config import parse_remedies
from gradlab.optim.chain import build_optimizer, evaluated_with
from gradlab.optim.remedies import REMEDIES

INDEX_KEY = "opt_index"  # the per-lane hparam that picks the chain


def unfusable(cfg: mlc.ConfigDict) -> str | None:
  """Why the runs of `cfg` cannot share a program with other optimizers; None if they
  can."""
  name = cfg.optimizer.name
  if evaluated_with(name) != "last":
    return f"{name} evaluates its {evaluated_with(name)} parameters"
  guards = [r for r in parse_remedies(cfg.optimizer.remedies) if REMEDIES.get(r).kind == "guard"]
  if guards:
    return f"the guard remedy {guards[0]} keeps its skip count in the chain's state"
  if cfg.model.get("parameterization", "standard") != "standard":
    return "per-layer learning rates follow each optimizer's update rule"
  if int(cfg.diagnostics.every) or cfg.diagnostics.initial == "on":
    return "the sharpness is measured (its preconditioner is the optimizer's own)"
  return None


def build_fused(names: Sequence[str], clip_enabled: bool = False, *,
                remedies: Sequence[str] = (), schedule: str = "constant"
                ) -> Callable[[Mapping[str, jax.Array]], optax.GradientTransformationExtraArgs]:
  """``make(hp) -> transformation`` running chain ``names[hp['opt_index']]`` of the
  `build_optimizer` chains of `names` (the same remedies and schedule for each)."""
  builders = [build_optimizer(n, clip_enabled, remedies=remedies, schedule=schedule)
              for n in names]

  def make(hp: Mapping[str, jax.Array]) -> optax.GradientTransformationExtraArgs:
    txs = [b(hp) for b in builders]
    index = jnp.round(hp[INDEX_KEY]).astype(jnp.int32)

    def init(params: Any) -> tuple[Any, ...]:
      return tuple(tx.init(params) for tx in txs)

    def update(grads: Any, state: tuple[Any, ...], params: Any = None, **extra: Any
               ) -> tuple[Any, tuple[Any, ...]]:
      outs = [tx.update(grads, s, params, **extra) for tx, s in zip(txs, state, strict=True)]
      updates = jax.tree.map(lambda *u: _pick(index, u), *[o[0] for o in outs])
      return updates, tuple(o[1] for o in outs)

    return optax.GradientTransformationExtraArgs(init, update)

  return make


def _pick(index: jax.Array, values: Sequence[jax.Array]) -> jax.Array:
  """values[index], as a chain of selects (index is a traced scalar per lane)."""
  out = values[-1]
  for i in range(len(values) - 2, -1, -1):
    out = jnp.where(index == i, values[i], out)
  return out
