"""The coordinate check: trains a few steps at several widths, per parameterization, and
shows which layers' activations grow with width (`gradlab.coord_check`).

    python -m experiments.coord_check --config=configs/coord_check.py --workdir=runs/coord
    python -m experiments.coord_check --config=configs/coord_check.py --workdir=runs/coord \\
        --widths=64,256,1024 --steps=20 --seeds=5 --parameterizations=standard,mup,ntk

The widths and parameterizations are the config's ``model.width`` and
``model.parameterization`` sweep axes unless --widths / --parameterizations give them;
the steps are ``train.steps`` unless --steps, and the seeds ``train.seed`` ..
``train.seed + sweep.replicas - 1`` unless --seeds gives their number. Any other key is
set as usual (``--config.optimizer.learning_rate=0.1``); the config's other sweep axes
are ignored. ``--config.quick=True`` runs the config's smoke size.

Writes WORKDIR/coord_check.csv (one row per parameterization, width, seed, step and
layer: ``rms``, ``delta_rms``), WORKDIR/coord_check.png (`gradlab.viz.coord_check`) and
WORKDIR/coord_check.md (per layer at the last step: the ratio of the largest width's
activation RMS to the smallest's, the spread, the log-log slope, the pass at 2x; a
sentence per parameterization). Bad input is one line on stderr and exit status 2,
before anything compiles.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from gradlab.registry import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file (default: configs/default.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "",
                               "Output folder (default: runs/<time>-<config>-coord_check).")
_WIDTHS = flags.DEFINE_list("widths", [], "Widths to train at, e.g. 64,128,256 (default: "
                            "the config's model.width axis).")
_PARAMETERIZATIONS = flags.DEFINE_list(
  "parameterizations", [], "model.parameterization values, e.g. standard,mup (default: the "
  "config's model.parameterization axis, else its model.parameterization).")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps (0: the config's train.steps).",
                              lower_bound=0)
_SEEDS = flags.DEFINE_integer("seeds", 0, "Seeds averaged, train.seed onwards (0: the "
                              "config's sweep.replicas).", lower_bound=0)

FILES = ("coord_check.csv", "coord_check.png", "coord_check.md")
# Keys the flags set: a --config.KEY=... of one of them would be silently replaced.
_SET_BY_FLAGS = {"model.width": "--widths", "model.parameterization": "--parameterizations"}


def _choices(cfg: Any, argv: Sequence[str]) -> tuple[list[int], list[str], int, list[int]]:
  """(widths, parameterizations, steps, seeds) from the flags, else the config."""
  for key in cli.user_override_keys(argv):
    if key in _SET_BY_FLAGS:
      raise ConfigError(f"a coordinate check sets '{key}' itself: give "
                        f"{_SET_BY_FLAGS[key]}=... instead of --config.{key}")
  axes = cfg.sweep.axes
  widths = (cli.positive_ints(_WIDTHS.value, "--widths") if _WIDTHS.value
            else list(axes.get("model.width", [])))
  if not widths:
    raise ConfigError("no widths: give --widths=64,128,... (or a model.width sweep axis in "
                      "the config)")
  names = list(dict.fromkeys([p.strip() for p in _PARAMETERIZATIONS.value] or
                             axes.get("model.parameterization", [cfg.model.parameterization])))
  steps = _STEPS.value or int(cfg.train.steps)
  seeds = [int(cfg.train.seed) + r for r in range(_SEEDS.value or int(cfg.sweep.replicas))]
  return widths, names, steps, seeds


def _main() -> int:
  import pandas as pd

  from gradlab import coord_check as cc
  from gradlab.data import load_dataset
  from gradlab.report.coord_check import write_markdown
  from gradlab.viz.coord_check import draw

  cfg = cli.apply_quick(_CONFIG.value, sys.argv)
  widths, names, steps, seeds = _choices(cfg, sys.argv)
  configs = cc.check_config(cfg, widths, names, steps, seeds)  # every validation error here
  workdir = _WORKDIR.value or cli.default_workdir(cli.config_path()) + "-coord_check"
  cli.check_workdir(workdir)
  c = configs[0]  # optimizer numbers resolved (an unset learning rate: its default)
  m = c.model
  about = (f"{m.name} depth {m.depth} {m.activation}, {c.init.family} init, "
           f"{c.data.name}; {c.optimizer.name} lr {c.optimizer.learning_rate:g}; "
           f"base width {m.base_width}; mean of {len(seeds)} seeds")
  print(f"gradlab coord_check: {about}; {', '.join(names)} at widths "
        f"{', '.join(map(str, sorted(set(widths))))}, {steps} steps -> {workdir}", flush=True)
  ignored = [k for k in cfg.sweep.axes if k not in _SET_BY_FLAGS]
  if ignored:
    print(f"note: sweep axes ignored (the check runs the config's point): "
          f"{', '.join(ignored)}", flush=True)
  dataset = load_dataset(cfg.data.name, cfg.data.data_dir or None, data_cfg=cfg.data)
  cells = cc.make_cells(configs, dataset.num_classes, dataset.task)
  start, tables = time.perf_counter(), []
  for cell in cells:
    t0 = time.perf_counter()
    tables.append(cc.run_cell(cell, dataset, seeds))
    print(f"  {cell.parameterization} width {cell.width}: {time.perf_counter() - t0:.1f} s",
          flush=True)
  wall = time.perf_counter() - start
  table = pd.concat(tables, ignore_index=True)
  summary = cc.summarize(table)
  os.makedirs(workdir, exist_ok=True)
  csv, png, md = (os.path.join(workdir, f) for f in FILES)
  table.to_csv(csv, index=False)
  notes = {(n, q): cc.growth_note(summary, n, steps, q) for n in names for q in cc.QUANTITIES}
  draw(cc.seed_means(table), notes, png, caption=about, order=names)
  command = " ".join(["python -m experiments.coord_check", *sys.argv[1:]])
  write_markdown(summary, steps, md, context=[
    f"`{command}`", "", f"{about}; {wall:.0f} s of training and compiling "
    f"({len(cells)} compiled programs)."])
  for name in names:
    print(cc.verdict(summary, name, steps))
  print(f"wrote {csv}, {png}, {md}")
  return 0


main = cli.make_main(_main, interrupted="nothing is kept; rerun the same command")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
