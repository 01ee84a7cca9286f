"""config -> optax chain: base optimizers by name, Gadam, remedies, schedules, guards.

Importing this package registers every optimizer (`OPTIMIZERS`), remedy (`REMEDIES`)
and schedule (`SCHEDULES`).
"""

from gradlab.optim import adam_family, classic, contrib, gadam  # noqa: F401  (registers)
from gradlab.optim.chain import (
  HPARAM_DEFAULTS,
  build_optimizer,
  chain_hparam_keys,
  eval_params,
  evaluated_with,
  paper_hparams,
  skip_count,
)
from gradlab.optim.registry import OPTIMIZER_INFO, OPTIMIZERS
from gradlab.optim.remedies import REMEDIES
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
  "evaluated_with",
  "paper_hparams",
  "skip_count",
]
