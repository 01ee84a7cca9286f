"""config -> optax chain: base optimizers by name, Gadam, remedies, schedules, guards,
and the numbers a run uses (set, else the optimizer's paper default: `paper`).

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
  skip_count,
)
from gradlab.optim.paper import (
  OptimizerNumbers,
  group_numbers,
  number_columns,
  paper_hparams,
  resolve_numbers,
  resolve_point,
)
from gradlab.optim.registry import OPTIMIZER_INFO, OPTIMIZERS
from gradlab.optim.remedies import REMEDIES
from gradlab.optim.schedules import SCHEDULES

__all__ = [
  "HPARAM_DEFAULTS",
  "OPTIMIZERS",
  "OPTIMIZER_INFO",
  "OptimizerNumbers",
  "REMEDIES",
  "SCHEDULES",
  "build_optimizer",
  "chain_hparam_keys",
  "eval_params",
  "evaluated_with",
  "group_numbers",
  "number_columns",
  "paper_hparams",
  "resolve_numbers",
  "resolve_point",
  "skip_count",
]
