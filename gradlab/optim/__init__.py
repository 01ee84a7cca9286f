"""config -> optax chain: base optimizers by name, Gadam, remedies, schedules, guards.

Importing this package registers every optimizer (`OPTIMIZERS`), remedy (`REMEDIES`)
and schedule (`SCHEDULES`).
"""

from gradlab.optim import adam_family, classic, contrib, gadam  # noqa: F401  (registers)
from gradlab.optim.chain import (
  REMEDIES,
  build_optimizer,
  chain_hparam_keys,
  eval_params,
  skip_count,
)
from gradlab.optim.registry import (
  HPARAM_DEFAULTS,
  OPTIMIZER_INFO,
  OPTIMIZERS,
  paper_hparams,
)
from gradlab.optim.schedules import SCHEDULES

__all__ = [
  "HPARAM_DEFAULTS",
  "OPTIMIZERS",
  "OPTIMIZER_INFO",
  "REMEDIES",
  "SCHEDULES",
  "build_optimizer",
  "chain_hparam_keys",
  "eval_params",
  "paper_hparams",
  "skip_count",
]
