"""The sweep and plot commands as a user runs them: clean errors, written outputs."""

from __future__ import annotations

import json
import os

import pytest
from conftest import REPO, run_cli

SMOKE = "--config=configs/smoke.py"


def _run(*args, cwd=REPO, timeout=300):
  return run_cli(*args, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("args, message", [
  ([SMOKE, "--config.model.widht=3"],
   "unknown config key 'model.widht' (did you mean 'model.width'?)"),
  (["--config=configs/nope.py"], "config file 'configs/nope.py' does not exist"),
  ([SMOKE, "--config.model.name=mlpp"],
   "unknown model 'mlpp' (did you mean 'mlp'?); known: "),
  ([SMOKE, "--config.optimizer.name=adamm"], "unknown optimizer 'adamm'"),
  ([SMOKE, "--config.data.name=mnist2"], "unknown dataset 'mnist2'"),
  ([SMOKE, "--config.model.activation=tanhh"], "unknown activation 'tanhh'"),
  ([SMOKE, "--config.init.family=kaiming"], "unknown init family 'kaiming'"),
  ([SMOKE, "--config.train.steps=0"], "'train.steps' must be positive"),
  ([SMOKE, "--config.model.depth=0"], "'model.depth' must be positive"),
  ([SMOKE, "--config.model.width=-4"], "'model.width' must be positive"),
  ([SMOKE, "--axis=optimizer.learning_rate=0.1,0"], "'optimizer.learning_rate' must be positive"),
  ([SMOKE, "--axis=init.sigma_w="], "sweep axis 'init.sigma_w' is empty"),
  ([SMOKE, "--axis=init.sigmaw=1,2"],
   "sweep axis 'init.sigmaw' names a key the config does not have"),
  ([SMOKE, "--config.init.sigma_w=2"], "'init.sigma_w' is a sweep axis of this config"),
  ([SMOKE, "--config.train.loss=crossentropy"], "unknown loss 'crossentropy'"),
  ([SMOKE, "--config.data.augment=flip"], "unknown augmentation 'flip'"),
  ([SMOKE, "--config.quick=True", "--config.quick_overrides=x"], "quick_overrides"),
])
def test_bad_input_is_one_clean_line(tmp_path, args, message):
  wd = tmp_path / "wd"
  out = run_cli("experiments.sweep", *args, f"--workdir={wd}", "--quiet")
  assert out.returncode == 2, out.stderr
  assert out.stderr.strip().startswith("error: ")
  assert message in out.stderr
  assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
  assert not wd.exists(), "nothing may be written before the config is valid"


def test_tiny_mnist1d_grid_writes_everything_and_redraws(tmp_path, tfds_dir):
  wd = str(tmp_path / "wd")
  out = _run("experiments.sweep", "--config=configs/default.py", f"--workdir={wd}", "--quiet",
             "--config.model.depth=2", "--config.model.width=8", "--config.train.steps=20",
             "--config.train.log_every=5", f"--config.data.data_dir={tfds_dir}",
             "--axis=init.sigma_w=geom:0.5:2:3", "--axis=optimizer.learning_rate=0.01,1e38",
             "--axis=optimizer.name=sgd,adam")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "12 runs" in out.stdout and "2 compiles" in out.stdout
  for name in ("config.json", "regime_map.png", "final_loss.png", "report.md"):
    assert os.path.getsize(os.path.join(wd, name)) > 0, name
  with open(os.path.join(wd, "regime_map.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(os.path.join(wd, "config.json")) as f:
    meta = json.load(f)
  assert meta["axes"] == ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]
  assert meta["config"]["data"]["name"] == "mnist1d"
  assert {"jax", "flax", "optax"} <= set(meta["versions"])
  assert meta["device_kind"] and meta["git_commit"]

  from gradlab import results

  df = results.load(wd)
  assert len(df) == 12
  assert set(df.loc[df["optimizer.learning_rate"] == 1e38, "regime"]) == {"diverged"}
  with open(os.path.join(wd, "report.md")) as f:
    report = f.read()
  assert "diverged" in report and "![regime map](regime_map.png)" in report

  os.remove(os.path.join(wd, "regime_map.png"))
  redraw = _run("experiments.plot", f"--workdir={wd}")
  assert redraw.returncode == 0, redraw.stderr[-2000:]
  assert os.path.exists(os.path.join(wd, "regime_map.png"))


def test_plot_on_a_folder_that_is_not_a_sweep(tmp_path):
  out = _run("experiments.plot", f"--workdir={tmp_path}")
  assert out.returncode == 2
  assert "not a gradlab sweep folder" in out.stderr and "Traceback" not in out.stderr
