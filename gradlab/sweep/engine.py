"""The sweep engine: one compile per group, chunks of lanes through jit(vmap(run)).

For each group of equal static structure the engine lowers and compiles
``jit(vmap(run, in_axes=(0, 0, None)))`` ONCE for the chunk shape, then feeds it every
chunk of that group. Each finished chunk is summarized, labelled by `gradlab.regimes`
and written atomically by `gradlab.results`. A rerun into the same workdir skips the
chunks already written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gradlab import prediction, regimes, results
from gradlab.data import load_dataset
from gradlab.losses import LOSSES
from gradlab.sweep import grid
from gradlab.sweep.meta import check_resume, sweep_metadata
from gradlab.train import build_run, make_data_arrays

log = logging.getLogger("gradlab")

# Which parameters final_loss / test metrics were measured with (gradlab.optim.eval_params).
EVALUATED_WITH = {"gadam": "iterate_average", "schedule_free_adamw": "schedule_free",
                  "schedule_free_sgd": "schedule_free"}


@dataclasses.dataclass
class SweepStats:
  n_points: int
  n_groups: int
  n_compiles: int
  n_skipped: int
  compile_seconds: float
  run_seconds: float
  wall_seconds: float


def _summary_rows(chunk: grid.Chunk, traj: Any, axes: list[str], cfg: mlc.ConfigDict,
                  chance: float, layer_names: list[str]) -> pd.DataFrame:
  n = chunk.size
  tr = traj.tracker
  first_bad = np.asarray(tr.first_nonfinite_step[:n])
  explosion = np.asarray(tr.explosion_step[:n])
  summary = {
    "first_nonfinite_step": first_bad,
    "initial_grad_norm": np.asarray(tr.initial_grad_norm[:n], np.float64),
    "max_grad_norm": np.asarray(tr.max_grad_norm[:n], np.float64),
    "initial_loss": np.asarray(traj.initial_loss[:n], np.float64),
    "final_loss": np.asarray(traj.final_loss[:n], np.float64),
    "skipped_steps": np.asarray(traj.skipped_steps[:n]),
  }
  labels = regimes.classify(summary, cfg.regimes.explode_factor, cfg.regimes.stall_fraction,
                            chance)
  rows: dict[str, Any] = {"run_id": chunk.run_ids[:n], "group": chunk.group,
                          "chunk": chunk.index}
  for key in axes:
    rows[key] = [values[key] for values in chunk.axis_values]
  rows["seed"] = chunk.seeds[:n]
  rows["regime"] = labels
  rows["first_nonfinite_step"] = np.where(first_bad >= 0, first_bad, np.nan)
  rows["explosion_step"] = np.where(explosion >= 0, explosion, np.nan)
  rows["initial_loss"] = summary["initial_loss"]
  rows["final_loss"] = summary["final_loss"]
  rows["chance_loss"] = chance
  rows["test_loss"] = np.asarray(traj.test_loss[:n], np.float64)
  rows["test_accuracy"] = np.asarray(traj.test_accuracy[:n], np.float64)
  rows["initial_grad_norm"] = summary["initial_grad_norm"]
  rows["max_grad_norm"] = summary["max_grad_norm"]
  rows["final_grad_norm"] = np.asarray(tr.final_grad_norm[:n], np.float64)
  rows["skipped_steps"] = summary["skipped_steps"]
  rows["eval_params"] = EVALUATED_WITH.get(cfg.optimizer.name, "last")
  rows.update(prediction.columns(traj, n, cfg, layer_names, chunk.hparams))
  return pd.DataFrame(rows)


def _trajectory_arrays(chunk: grid.Chunk, traj: Any, layer_names: list[str]
                       ) -> dict[str, np.ndarray]:
  n = chunk.size
  out = {"run_id": chunk.run_ids[:n], "layer_names": np.asarray(layer_names)}
  for name in ("step", "loss", "grad_norm", "grad_norm_by_layer", "update_ratio_by_layer",
               "param_norm", "update_norm", "finite", "sharpness_step", "sharpness",
               "preconditioned_sharpness"):
    out[name] = np.asarray(getattr(traj, name))[:n]
  return out


def run_sweep(cfg: mlc.ConfigDict, workdir: str, progress: bool = True,
              on_compile: Callable[[int, float], None] | None = None) -> SweepStats:
  """Runs the whole grid of `cfg` into `workdir`; returns counts and timings."""
  t_start = time.perf_counter()
  plan = grid.make_plan(cfg)  # validates everything before any compile
  os.makedirs(workdir, exist_ok=True)
  check_resume(workdir, cfg)
  results.write_json(os.path.join(workdir, results.CONFIG_FILE), sweep_metadata(cfg, plan))
  done = {os.path.basename(p) for p in results.chunk_files(workdir)}

  datasets: dict[tuple[str, str], Any] = {}
  sizes = [grid.chunk_size_for(cfg, g) for g in plan.groups]
  n_chunks = sum(-(-len(g) // s) for g, s in zip(plan.groups, sizes, strict=True))
  bar = tqdm(total=n_chunks, unit="chunk", disable=not progress, dynamic_ncols=True)
  stats = SweepStats(plan.n_points, len(plan.groups), 0, 0, 0.0, 0.0, 0.0)
  runs_done = 0
  for group, size in zip(plan.groups, sizes, strict=True):
    todo = [c for c in grid.chunks(group, size)
            if results.chunk_name(group.index, c.index, "parquet") not in done]
    skipped = -(-len(group) // size) - len(todo)
    stats.n_skipped += sum(c.size for c in grid.chunks(group, size)) - sum(c.size for c in todo)
    bar.update(skipped)
    if not todo:
      continue
    gcfg = group.cfg
    data_key = (gcfg.data.name, gcfg.data.data_dir)
    if data_key not in datasets:
      datasets[data_key] = load_dataset(gcfg.data.name, gcfg.data.data_dir or None)
    dataset = datasets[data_key]
    data = make_data_arrays(dataset, gcfg.train.eval_size)
    run = build_run(gcfg, dataset.num_classes, tuple(dataset.x_train.shape[1:]))
    hp_spec = {k: jax.ShapeDtypeStruct((size,), jnp.float32) for k in group.hparams}
    key_spec = jax.eval_shape(lambda s: jax.vmap(jax.random.PRNGKey)(s),
                              jax.ShapeDtypeStruct((size,), jnp.int32))
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(run, in_axes=(0, 0, None))).lower(hp_spec, key_spec,
                                                                 data).compile()
    dt = time.perf_counter() - t0
    stats.n_compiles += 1
    stats.compile_seconds += dt
    log.info("group %d/%d compiled in %.1fs (%d points, chunks of %d)", group.index + 1,
             len(plan.groups), dt, len(group), size)
    if on_compile is not None:
      on_compile(group.index, dt)
    layer_names = _layer_names(gcfg, dataset)
    chance = LOSSES.get(gcfg.train.loss).chance(dataset.y_train, dataset.num_classes)
    for chunk in todo:
      t0 = time.perf_counter()
      keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(chunk.seeds, jnp.int32))
      traj = jax.device_get(compiled({k: jnp.asarray(v) for k, v in chunk.hparams.items()},
                                     keys, data))
      stats.run_seconds += time.perf_counter() - t0
      results.write_chunk(workdir, group.index, chunk.index,
                          _summary_rows(chunk, traj, plan.axes, gcfg, chance, layer_names),
                          _trajectory_arrays(chunk, traj, layer_names))
      runs_done += chunk.size
      bar.update(1)
      bar.set_postfix(runs=f"{runs_done + stats.n_skipped}/{plan.n_points}")
  bar.close()
  stats.wall_seconds = time.perf_counter() - t_start
  log.info("%d compiles for %d groups", stats.n_compiles, stats.n_groups)
  return stats


def _layer_names(cfg: mlc.ConfigDict, dataset: Any) -> list[str]:
  from gradlab.models import MODELS

  _, names = MODELS.get(cfg.model.name)(cfg.model, cfg.init.family, dataset.num_classes)
  return names
