"""The main job: sweep a grid of training runs and draw the regime map.

    python -m experiments.sweep                                   # configs/default.py
    python -m experiments.sweep --config=configs/default.py --workdir=runs/x \
        --config.train.steps=200 --axis=init.sigma_w=geom:0.5:4:6

Writes WORKDIR/results/*.parquet, WORKDIR/trajectories/*.npz, WORKDIR/config.json,
WORKDIR/regime_map.png, WORKDIR/final_loss.png, WORKDIR/report.md and WORKDIR/index.html
(the interactive explorer; rewritten while the sweep runs, marked partial until it
ends). Rerunning into the same workdir skips the runs already written.

Boundary search instead of a dense grid (writes boundary.csv, boundary.json and
boundary.png, over the dense map of --dense when given):

    python -m experiments.sweep --config=configs/smoke.py --workdir=runs/edge \
        --config.sweep.mode=boundary --axis=optimizer.learning_rate=1e-4,100

Several processes (one per host of a TPU pod: see scripts/tpu_vm.sh; or local ones):

    python -m experiments.sweep --multihost --coordinator=127.0.0.1:12345 \
        --num_processes=2 --process_id=0 --workdir=runs/x ...     # and process_id=1
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from gradlab import host_devices

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file (default: configs/default.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Output folder (default: runs/<time>-<config>).")
_AXIS = cli.define_axis_flag()
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")
_SCALING = cli.define_scaling_flags()
_DENSE = flags.DEFINE_string(
  "dense", "", "Boundary mode: a dense sweep of the same model to draw boundary.png over "
  "(default: config key sweep.dense_workdir).")


def _main() -> int:
  host_devices.configure()  # every core on the CPU (GRADLAB_HOST_DEVICES; before JAX starts)
  cli.start_processes(_SCALING, _WORKDIR.value)
  import jax

  from gradlab.sweep import MODES, make_plan

  cfg = cli.apply_quick(_CONFIG.value, sys.argv)
  cfg = cli.apply_axes(cfg, _AXIS.value)
  cli.check_overrides_not_swept(cfg, sys.argv)  # the file's axes and --axis alike
  workdir = _WORKDIR.value or cli.default_workdir(cli.config_path(), quick=cfg.quick)
  cli.check_workdir(workdir)
  plan = make_plan(cfg)  # every validation error surfaces here, before any output
  _check_datasets(plan)
  boundary = cfg.sweep.mode == "boundary"
  lead = jax.process_index() == 0
  if lead and not boundary:
    print(f"gradlab sweep: {plan.n_points} runs in {len(plan.groups)} groups -> {workdir}",
          flush=True)
  elif lead:
    print(f"gradlab boundary search along {cfg.sweep.boundary_axis} -> {workdir}", flush=True)
  run_mode = MODES[cfg.sweep.mode]  # the plan validated sweep.mode
  live = None
  if lead and not boundary:
    from gradlab.viz.explorer.live import LiveIndex

    live = LiveIndex(workdir)  # index.html while the sweep runs
  stats = run_mode(cfg, plan, workdir, progress=not _QUIET.value,
                   resume=_SCALING["resume"].value, on_chunk=live)
  if not lead:
    return 0
  done = (f"{stats.n_points} runs ({stats.n_skipped} already done) in {stats.n_groups} groups, "
          f"{stats.n_compiles} compiles ({stats.compile_seconds:.1f}s compiling"
          + (f", plus {stats.n_trial_compiles} trial compiles to size chunks "
             f"({stats.trial_compile_seconds:.1f}s)" if stats.n_trial_compiles else "")
          + (f", loaded on {stats.n_relocations} more device(s) in "
             f"{stats.relocate_seconds:.1f}s" if stats.n_relocations else "")
          + f"), {stats.run_seconds:.1f}s running on {stats.n_devices} device(s), "
            f"{stats.wall_seconds:.1f}s total")
  if boundary:
    return _finish_boundary(cfg, workdir, stats, done)
  from gradlab.viz import draw_all

  figures = draw_all(workdir)
  print(done)
  print(f"wrote {os.path.join(workdir, 'results')}/, " + ", ".join(figures.values()))
  if stats.n_processes > 1:
    print("(a multi-host sweep: on hosts that do not share a disk, fetch every host's "
          "results and redraw with python -m experiments.plot)")
  return 0


def _check_datasets(plan) -> None:
  """Every catalog dataset of the plan is prepared or can be downloaded here, judged in
  seconds before anything is written (`gradlab.data.loader.check_obtainable`)."""
  from gradlab.data.loader import check_obtainable

  for name, data_dir, mock in dict.fromkeys(
      (g.cfg.data.name, g.cfg.data.data_dir or None, int(g.cfg.data.mock))
      for g in plan.groups):
    check_obtainable(name, data_dir, mock)


def _finish_boundary(cfg, workdir: str, stats, done: str) -> int:
  from gradlab.sweep.boundary import BOUNDARY_CSV, dense_runs_for_same_resolution
  from gradlab.viz.boundary import draw_boundary

  found = stats.boundary
  n_outer = len(found.lo)
  rounds = int(cfg.sweep.boundary_rounds)
  from gradlab.viz.explorer import write_index

  figure = draw_boundary(workdir, dense_dir=_DENSE.value or cfg.sweep.dense_workdir)
  index = write_index(workdir)  # every run of the search, one click away
  counts = {s: int((found.status == s).sum()) for s in dict.fromkeys(found.status)}
  print(done)
  print(f"boundary of {n_outer} points ({', '.join(f'{v} {k}' for k, v in counts.items())}): "
        f"{found.n_runs} runs; a dense grid of the same resolution needs "
        f"{dense_runs_for_same_resolution(n_outer, rounds, int(cfg.sweep.replicas))}")
  print(f"wrote {os.path.join(workdir, BOUNDARY_CSV)}, {figure}, {index}")
  return 0


main = cli.make_main(_main)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
