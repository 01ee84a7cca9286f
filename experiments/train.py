"""One training run with every diagnostic on: diagnostics.json and the dashboard.

    python -m experiments.train --config=configs/signal_propagation.py --workdir=runs/sp
    python -m experiments.train --config=configs/edge_of_stability.py --workdir=runs/eos

Runs the config's own point (its `init`, `optimizer`, `train` ... values). A sweep config
works too: its sweep axes are IGNORED, with a note printed and kept in diagnostics.json
("notes"), and `--config.KEY=VALUE` may set any key, swept or not (e.g.
`--config.init.sigma_w=2`). `train.layer_probes` is turned on, and `diagnostics.every`
is set to `train.log_every` when it is 0, so every diagnostic is measured.

Writes WORKDIR/diagnostics.json (`gradlab.diagnose.diagnose`; keys in
docs/diagnostics.md), WORKDIR/dashboard.png, WORKDIR/per_layer.png and
WORKDIR/sharpness.png (`gradlab.viz.dashboard`), and always TensorBoard event files in
WORKDIR/tensorboard (`gradlab.tensorboard.write_run`: loss, gradient norm, per-layer
gradient norms and update ratios, sharpness and its threshold as scalars, histograms of
each layer's gradient entries at the logged steps; `diagnostics.grad_histograms` is turned
on; docs/tensorboard.md), for `tensorboard --logdir WORKDIR/tensorboard`. Bad input is
one line on stderr and exit status 2.

    python -m experiments.train --config=configs/edge_of_stability.py --workdir=runs/eos \
        --checkpoint_every=500

saves orbax checkpoints every 500 steps in WORKDIR/checkpoints; the same command after a
kill restores the latest one and finishes the run (`gradlab.checkpoint`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file (default: configs/default.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "",
                               "Output folder (default: runs/<time>-<config>-train).")

_CHECKPOINT_EVERY = flags.DEFINE_integer(
  "checkpoint_every", 0, "Save an orbax checkpoint every this many steps into "
  "WORKDIR/checkpoints; a rerun with the same workdir restores the latest and goes on "
  "(0 = off; a multiple of train.log_every and of diagnostics.every).")

DIAGNOSTICS_FILE = "diagnostics.json"


def _checkpointed(cfg, dataset, directory: str, every: int):
  from gradlab.checkpoint import train_checkpointed

  return train_checkpointed(cfg, dataset, directory, every)


def _main() -> int:
  from gradlab import diagnose, results, tensorboard
  from gradlab.data import load_dataset
  from gradlab.train import train_one
  from gradlab.viz import dashboard

  cfg = cli.apply_quick(_CONFIG.value, sys.argv)
  cfg, notes = diagnose.prepare_config(cfg)  # every validation error is here
  workdir = _WORKDIR.value or cli.default_workdir(cli.config_path()) + "-train"
  cli.check_workdir(workdir)  # before training, which would find out only at the end
  print(f"gradlab train: {cfg.model.name} depth {cfg.model.depth} width {cfg.model.width} "
        f"{cfg.model.activation}, sigma_w = {cfg.init.sigma_w:g}, {cfg.optimizer.name} "
        f"lr = {cfg.optimizer.learning_rate:g}, {cfg.train.steps} steps -> {workdir}",
        flush=True)
  for note in notes:
    print(f"note: {note}", flush=True)
  dataset = load_dataset(cfg.data.name, cfg.data.data_dir or None, data_cfg=cfg.data)
  train_fn = train_one
  if _CHECKPOINT_EVERY.value:
    ckpt = os.path.join(workdir, "checkpoints")
    train_fn = functools.partial(_checkpointed, directory=ckpt, every=_CHECKPOINT_EVERY.value)
    print(f"checkpoints every {_CHECKPOINT_EVERY.value} steps in {ckpt}", flush=True)
  diag = diagnose.diagnose(cfg, dataset, notes, train_fn=train_fn)
  os.makedirs(workdir, exist_ok=True)
  results.write_json(os.path.join(workdir, DIAGNOSTICS_FILE), diag)
  paths = dashboard.write_figures(diag, workdir)
  logdir = os.path.join(workdir, tensorboard.TENSORBOARD_DIR)
  events = tensorboard.write_run(diag, logdir)
  s, sh, init = diag["summary"], diag["sharpness"], diag["init"]
  print(f"regime {s['regime']}: loss {s['initial_loss']} -> {s['final_loss']}; onset "
        f"{diag['onset']}")
  if init.get("chi_1_measured_mean") is not None:
    print(f"chi_1 at init: measured {init['chi_1_measured_mean']:.4g} (geometric mean over "
          f"layers), mean field {init['chi_1_theory']}")
  print(f"sharpness: max {sh['max_ratio_to_threshold']} x threshold "
        f"{sh['formula']} = {sh['threshold']}")
  print(f"wrote {os.path.join(workdir, DIAGNOSTICS_FILE)}, " + ", ".join(paths.values())
        + f", {events}")
  print(f"TensorBoard: tensorboard --logdir {logdir}  (pip install tensorboard to view)")
  return 0


main = cli.make_main(_main, log_level=logging.INFO, interrupted=(
  "nothing is kept unless --checkpoint_every was given; then rerunning the same command "
  "(same --workdir) restores the latest checkpoint and goes on"))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
