"""Config -> optax chain: optional remedy stages, then the base optimizer.

The chain's SHAPE (which optimizer, which stages are present) is static; every number in
it (learning rate, betas, clip threshold, ...) is traced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import optax

from gradlab.optim.registry import OPTIMIZERS, Hparams

Builder = Callable[[Hparams], optax.GradientTransformation]


def build_optimizer(name: str, clip_enabled: bool) -> Builder:
  """Returns hp -> transformation for the static structure (name, clip stage on/off).

  With `clip_enabled`, gradients are first rescaled to global norm at most
  ``hp['clip']`` (Pascanu et al. 2013, "On the difficulty of training recurrent neural
  networks", Algorithm 1).
  """
  base = OPTIMIZERS.get(name)

  def make(hp: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    stages = []
    if clip_enabled:
      stages.append(optax.clip_by_global_norm(hp["clip"]))
    stages.append(base(hp))
    return optax.chain(*stages) if len(stages) > 1 else stages[0]

  return make
