"""The main job: sweep a grid of training runs and draw the regime map.

    python -m experiments.sweep                                   # configs/default.py
    python -m experiments.sweep --config=configs/default.py --workdir=runs/x \
        --config.train.steps=200 --axis=init.sigma_w=geom:0.5:4:6

Writes WORKDIR/results/*.parquet, WORKDIR/trajectories/*.npz, WORKDIR/config.json,
WORKDIR/regime_map.png, WORKDIR/final_loss.png and WORKDIR/report.md. Rerunning into
the same workdir skips the chunks already written.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file (default: configs/default.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Output folder (default: runs/<time>-<config>).")
_AXIS = cli.define_axis_flag()
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")


def _main() -> int:
  from gradlab.figures import draw_all
  from gradlab.sweep import make_plan, run_sweep

  cli.check_overrides_not_swept(_CONFIG.value, sys.argv)
  cfg = cli.apply_axes(_CONFIG.value, _AXIS.value)
  workdir = _WORKDIR.value or cli.default_workdir(cli.config_path())
  plan = make_plan(cfg)  # every validation error surfaces here, before any output
  print(f"gradlab sweep: {plan.n_points} runs in {len(plan.groups)} groups -> {workdir}",
        flush=True)
  stats = run_sweep(cfg, workdir, progress=not _QUIET.value)
  figures = draw_all(workdir)
  print(f"{stats.n_points} runs ({stats.n_skipped} already done) in {stats.n_groups} groups, "
        f"{stats.n_compiles} compiles ({stats.compile_seconds:.1f}s compiling, "
        f"{stats.run_seconds:.1f}s running, {stats.wall_seconds:.1f}s total)")
  print(f"wrote {os.path.join(workdir, 'results')}/, " + ", ".join(figures.values()))
  return 0


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.getLogger("gradlab").setLevel(logging.INFO)
  sys.exit(cli.run_cleanly(_main))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
