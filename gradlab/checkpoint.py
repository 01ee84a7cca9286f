"""Long single runs in segments, with orbax checkpoints between them.

`train_checkpointed` runs the same computation as `gradlab.train.train_one` (the same
`run`, cut into `advance` segments of `every` steps), saving after each segment the
training state (parameters, optimizer state, trackers), the logged records so far and
the next block. Rerun with the same checkpoint folder, it restores the latest
checkpoint and goes on from there: the trajectory equals an uninterrupted run.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import orbax.checkpoint as ocp

from gradlab.compile_options import run_options
from gradlab.registry import ConfigError
from gradlab.train import Trajectory, build_run, hparams_from_config, make_data_arrays


def _leaves_dict(tree: Any) -> dict[str, np.ndarray]:
  return {f"{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(tree))}


def _from_leaves(d: dict[str, Any], like: Any) -> Any:
  leaves = [jnp.asarray(d[k]) for k in sorted(d)]
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves)


def train_checkpointed(cfg: mlc.ConfigDict, dataset: Any, directory: str, every: int,
                       stop_after: int | None = None) -> Trajectory | None:
  """Trains cfg's point, checkpointing every `every` steps into `directory`.

  `every` must be a multiple of train.log_every (and of diagnostics.every when that is
  on). `stop_after` (segments, for tests) returns None after that many new segments, as
  if the process had been killed.
  """
  log_every = int(cfg.train.log_every)
  unit = log_every * max(1, int(cfg.diagnostics.every) // log_every)
  if every <= 0 or every % unit:
    raise ConfigError(f"checkpoint interval {every} must be a positive multiple of "
                      f"{unit} steps (train.log_every, and diagnostics.every when on)")
  built = build_run(cfg, dataset.num_classes, task=dataset.task)
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams_from_config(cfg).items()}
  key = jax.random.PRNGKey(int(cfg.train.seed))
  data = make_data_arrays(dataset, cfg.train.eval_size)
  seg_blocks = every // log_every
  n_logs = built.n_logs

  # parts() inside each jitted function, so the keys and the optimizer are built in the
  # trace, exactly as in train_one's jit(built.run)
  opts = run_options(cfg)
  start = jax.jit(lambda: built.parts(hp, key, data).start(), compiler_options=opts)
  advance = jax.jit(lambda carry, first, n: built.parts(hp, key, data).advance(carry, first, n),
                    static_argnums=2, compiler_options=opts)
  finish = jax.jit(lambda carry, outs, l0: built.parts(hp, key, data).finish(carry, outs, l0),
                   compiler_options=opts)

  carry_like, _ = jax.eval_shape(start)
  manager = ocp.CheckpointManager(os.path.abspath(directory),
                                  options=ocp.CheckpointManagerOptions(max_to_keep=2))
  latest = manager.latest_step()
  if latest is None:
    carry, initial_loss = start()
    next_block, outs = 0, None
  else:
    saved = manager.restore(latest, args=ocp.args.StandardRestore())
    carry = _from_leaves(saved["carry"], carry_like)
    initial_loss = jnp.asarray(saved["initial_loss"])
    next_block = int(saved["next_block"])
    outs_like = jax.eval_shape(
      lambda c: built.parts(hp, key, data).advance(c, 0, next_block), carry_like)[1]
    outs = _from_leaves(saved["outs"], outs_like)

  done = 0
  while next_block < n_logs:
    n = min(seg_blocks, n_logs - next_block)
    carry, new = advance(carry, next_block, n)
    outs = new if outs is None else jax.tree_util.tree_map(
      lambda a, b: jnp.concatenate([a, b]), outs, new)
    next_block += n
    manager.save(next_block * log_every, args=ocp.args.StandardSave({
      "carry": _leaves_dict(carry), "outs": _leaves_dict(outs),
      "initial_loss": np.asarray(initial_loss), "next_block": np.asarray(next_block)}))
    manager.wait_until_finished()
    done += 1
    if stop_after is not None and done >= stop_after and next_block < n_logs:
      manager.close()
      return None
  manager.close()
  if outs is None:  # fewer steps than one log block
    outs = jax.tree_util.tree_map(jnp.asarray, jax.eval_shape(
      lambda c: built.parts(hp, key, data).advance(c, 0, 0), carry_like)[1])
  return finish(carry, outs, initial_loss)
