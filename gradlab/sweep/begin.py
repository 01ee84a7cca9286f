"""What every sweep mode does first (`start`), and the progress bar.

`start` takes this process's lock of the workdir, builds the mesh, points the compile
cache, checks a resume, writes config.json and recovers the runs already written.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import jax
import ml_collections as mlc
import pandas as pd
from tqdm.auto import tqdm

from gradlab import results
from gradlab.config import flatten
from gradlab.sweep import cache, grid, lock
from gradlab.sweep import mesh as mesh_lib
from gradlab.sweep.meta import check_resume, sweep_metadata


class Started(NamedTuple):
  """What `start` found: the mesh, the config keys that differ from the saved config
  (a forced resume), the rows already written in this process (every column), the
  corrupt chunk files set aside, and the saved config (flattened; {} for a new workdir)."""

  mesh: Any
  differences: list[str]
  done: pd.DataFrame
  n_corrupt: int
  saved: dict[str, Any]


def start(cfg: mlc.ConfigDict, workdir: str, resume: str, plan: grid.Plan,
          extra_meta: dict[str, Any] | None = None) -> Started:
  """What both sweep modes do first, in every process: this process's lock of the
  workdir (`gradlab.sweep.lock`: a second sweep into it is refused), the mesh, the
  compile cache, the resume check, config.json (process 0; others only where their
  filesystem lacks it) and the runs already done (corrupt chunks set aside).

  config.json keeps the record of every forced resume (``resumes``: when, the commit and
  the keys that differed), carried over by every later run, never erased;
  ``resumed_with_differences`` lists the differences of all of them."""
  mesh = mesh_lib.make_mesh(int(cfg.mesh.data))
  results.check_workdir(workdir)
  lock.acquire(workdir, jax.process_index())
  cache.configure(cache.cache_dir(str(cfg.sweep.compile_cache), workdir))
  diff = check_resume(workdir, cfg, resume)
  config_path = os.path.join(workdir, results.CONFIG_FILE)
  saved = results.read_config(workdir) if os.path.exists(config_path) else {}
  meta = {**sweep_metadata(cfg, plan), **(extra_meta or {})}
  history = list(saved.get("resumes", []))
  if diff:
    history.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "git_commit": meta.get("git_commit"), "differences": diff})
  if history:
    meta["resumes"] = history
    meta["resumed_with_differences"] = [d for h in history for d in h["differences"]]
  if jax.process_index() == 0:
    results.write_json(config_path, meta)
  mesh_lib.barrier("gradlab-config-written")
  if jax.process_index() != 0 and not os.path.exists(config_path):
    results.write_json(config_path, meta)  # this host does not share process 0's disk
  done, corrupt = results.recover(workdir)
  return Started(mesh, diff, done, len(corrupt), flatten(saved.get("config", {})))


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
  return tqdm(total=total, initial=initial, unit="run", dynamic_ncols=True,
              disable=not enabled or jax.process_index() != 0)
