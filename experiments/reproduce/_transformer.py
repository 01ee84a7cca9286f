"""Shared by the Transformer reproductions (xiong2020, wortsman2023): the character-level
`transformer_lm` on gradlab's offline `pydocs` corpus (docs/transformer.md), the trained
share of a group of runs, and per-lr curves read from a sweep's result rows.

Nothing here trains: each paper builds its config with `lm_config`, runs it with
`Context.sweep` and reads the rows with the functions below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections as mlc
import numpy as np
import pandas as pd

from experiments.reproduce.base import Context
from gradlab.defaults import base_config

LR = "optimizer.learning_rate"
# Regimes that count as "trained" (gradlab.regimes: the loss fell below 0.95 x
# min(initial, chance) and did not explode; a catapult recovered to a trained loss).
TRAINED = ("trained", "catapult")


def lm_config(ctx: Context, width: int, depth: int, heads: int, seq_len: int, batch: int,
              steps: int, ln_position: str = "pre") -> mlc.ConfigDict:
  """A GELU `transformer_lm` (MLP ratio 4, no biases, LayerNorm at `ln_position`,
  learned positions, untied head) on `pydocs`, with `steps` of training logged every 10
  steps (50 at paper scale, 5 at smoke size) and a 256-window eval slice (1024 at paper
  scale, 32 at smoke size)."""
  c = base_config()
  c.model.name = "transformer_lm"
  c.model.width = width
  c.model.depth = depth
  c.model.heads = heads
  c.model.mlp_ratio = 4
  c.model.activation = "gelu"
  c.model.use_bias = False
  c.model.norm = "layer"
  c.model.ln_position = ln_position
  c.model.positions = "learned"
  c.model.tied_embeddings = False
  c.data.name = "pydocs"
  c.data.seq_len = seq_len
  c.data.batch_size = batch
  c.train.steps = steps
  c.train.log_every = min(ctx.pick(50, 10, 5), steps)
  c.train.eval_size = ctx.pick(1024, 256, 32)
  return c


def select(df: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
  """The rows of `df` whose columns equal `where`'s values, sorted by learning rate."""
  keep = np.ones(len(df), bool)
  for key, value in where.items():
    keep &= (df[key] == value).to_numpy()
  return df[keep].sort_values(LR)


def trained_share(df: pd.DataFrame, where: Mapping[str, Any]) -> float:
  """The fraction of the runs matching `where` that gradlab labels trained (or catapult:
  a spike, then trained); NaN when none match."""
  rows = select(df, where)
  if rows.empty:
    return float("nan")
  return float(rows["regime"].isin(TRAINED).mean())


def curve(df: pd.DataFrame, where: Mapping[str, Any], column: str) -> dict[str, list]:
  """{"lr", "value", "regime"} of the runs matching `where`, by learning rate (a
  non-finite value becomes None, as reproduction.json keeps it)."""
  rows = select(df, where)
  values = [float(v) if np.isfinite(v) else None for v in rows[column].to_numpy(float)]
  return {"lr": rows[LR].astype(float).tolist(), "value": values,
          "regime": rows["regime"].astype(str).tolist()}
