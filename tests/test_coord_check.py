"""The coordinate check (`gradlab.coord_check`, experiments/coord_check.py): its numbers
against closed forms (muP's readout at init is the standard one times (n/n0)^-1/2; the
two are one network at the base width; run()'s own initial logits), the summary's
ratio and slope on a known power law, the standard parameterization's growth with width
after a few Adam steps beside muP's flat changes, and the command's files and errors."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from configs import coord_check as coord_config
from experiments.cli import positive_ints
from gradlab import coord_check as cc
from gradlab.data import load_dataset
from gradlab.defaults import apply_quick
from gradlab.diagnose import init_params
from gradlab.registry import ConfigError

BASE, WIDE, STEPS = 16, 512, 5
HIDDEN = ("dense_0", "dense_1", "dense_2")
# configs/coord_check.py's smoke size (base width 16, 2 seeds, Adam at 1e-2), 3 layers
# deep, on 'teacher', at widths 16 and 512 for 5 steps: 4 compiles
OVERRIDES = ("--config.model.depth=3", "--config.data.name=teacher")


def _cli(*args, timeout=300):
  return run_cli("experiments.coord_check", "--config=configs/coord_check.py",
                 "--config.quick=True", *args, timeout=timeout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
  out = tmp_path_factory.mktemp("coord") / "run"
  proc = _cli(f"--workdir={out}", f"--widths={BASE},{WIDE}", f"--steps={STEPS}", *OVERRIDES)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return str(out)


@pytest.fixture(scope="module")
def table(workdir) -> pd.DataFrame:
  return pd.read_csv(os.path.join(workdir, "coord_check.csv"))


def _at(table, name, width, step, layer, quantity="rms"):
  rows = table[(table["parameterization"] == name) & (table["width"] == width)
               & (table["step"] == step) & (table["layer"] == layer)].sort_values("seed")
  return rows[quantity].to_numpy()


def test_mup_at_init_is_standard_with_the_readout_times_m_to_the_minus_half(table):
  m = WIDE / BASE
  for layer in HIDDEN:  # muP's hidden init and multipliers are standard's
    np.testing.assert_allclose(_at(table, "mup", WIDE, 0, layer),
                               _at(table, "standard", WIDE, 0, layer), rtol=1e-6)
  np.testing.assert_allclose(_at(table, "mup", WIDE, 0, "readout"),
                             _at(table, "standard", WIDE, 0, "readout") * m ** -0.5, rtol=1e-5)
  # and at init the standard layers' RMS does not depend on width (He init, 1/fan_in)
  for layer in (*HIDDEN, "readout"):
    ratio = _at(table, "standard", WIDE, 0, layer).mean() / _at(
      table, "standard", BASE, 0, layer).mean()
    assert 0.7 < ratio < 1.4, (layer, ratio)


def test_mup_and_standard_are_one_network_at_the_base_width(table):
  a = table[(table["parameterization"] == "mup") & (table["width"] == BASE)]
  b = table[(table["parameterization"] == "standard") & (table["width"] == BASE)]
  np.testing.assert_allclose(a[["rms", "delta_rms"]].to_numpy(),
                             b[["rms", "delta_rms"]].to_numpy(), rtol=1e-5, atol=1e-7)


def test_step_zero_is_the_params_run_starts_from(table):
  cfg = coord_config.get_config()
  cfg.quick = True
  cfg = apply_quick(cfg)
  cfg.model.depth, cfg.data.name = 3, "teacher"
  assert cfg.model.width == BASE
  data = load_dataset("teacher")
  params, model, _, _ = init_params(cfg, data.num_classes, data.x_train.shape[1:])
  logits = model.apply({"params": params}, jnp.asarray(data.x_train[:cc.PROBE_SIZE]))
  rms = float(jnp.sqrt(jnp.mean(logits ** 2)))
  assert _at(table, "standard", BASE, 0, "readout")[0] == pytest.approx(rms, rel=1e-5)


def test_standard_grows_with_width_after_adam_steps_and_mup_does_not(table):
  s = cc.summarize(table)
  at = s[s["step"] == STEPS].set_index(["parameterization", "layer", "quantity"])
  # standard, one global Adam rate: a hidden layer's change grows ~ width (32x here)
  assert at.loc[("standard", "dense_1", "delta_rms"), "ratio"] > 5
  assert at.loc[("standard", "readout", "delta_rms"), "ratio"] > 2
  assert not at.loc[("standard", "dense_1", "rms"), "passes"]
  # muP: nothing grows, and every hidden layer's change is flat within 2x
  mup = at.loc["mup"]
  assert (mup["ratio"] < 1.5).all(), mup["ratio"]
  assert mup.loc[[(layer, "delta_rms") for layer in HIDDEN], "passes"].all()


def test_summary_fits_a_known_power_law():
  widths = [64, 256, 1024]
  rows = [dict(parameterization="p", width=w, seed=s, step=1, layer=layer, depth=d,
               rms=c * w ** e, delta_rms=c * w ** e)
          for s in (0, 1) for d, (layer, c, e) in enumerate([("a", 2.0, 0.5), ("b", 3.0, 0.0)])
          for w in widths]
  s = cc.summarize(pd.DataFrame(rows)).set_index(["layer", "quantity"])
  assert s.loc[("a", "rms"), "slope"] == pytest.approx(0.5)
  assert s.loc[("a", "rms"), "ratio"] == pytest.approx(4.0)
  assert not s.loc[("a", "rms"), "passes"]
  assert s.loc[("b", "rms"), "slope"] == pytest.approx(0.0, abs=1e-9)
  assert s.loc[("b", "rms"), "passes"]
  note = cc.growth_note(s.reset_index(), "p", 1)
  assert note.startswith("grows: a x4") and "b" not in note


def test_command_writes_the_table_the_figure_and_the_summary(workdir, table):
  # 2 parameterizations x 2 widths x 2 seeds x 6 steps (0..5) x 4 layers
  assert len(table) == 2 * 2 * 2 * (STEPS + 1) * 4
  assert set(table["layer"]) == {*HIDDEN, "readout"}
  assert os.path.getsize(os.path.join(workdir, "coord_check.png")) > 10_000
  with open(os.path.join(workdir, "coord_check.md")) as f:
    md = f.read()
  assert "| mup | readout |" in md and f"- standard at step {STEPS}: activation RMS" in md


@pytest.mark.parametrize("text", ["abc", "0", "-4", "1.5", ""])
def test_a_width_that_is_not_a_positive_whole_number_is_refused(text):
  with pytest.raises(ConfigError, match="is not a positive whole number"):
    positive_ints(["64", text], "--widths")


@pytest.mark.parametrize("args, message", [
  (["--widths=16,abc"], "--widths: 'abc' is not a positive whole number"),
  (["--parameterizations=standard,mupp"], "unknown parameterization 'mupp'"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_runs(tmp_path, args, message):
  proc = run_cli("experiments.coord_check", "--config=configs/coord_check.py",
                 "--config.quick=True", f"--workdir={tmp_path / 'x'}", *args)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
  assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
  assert "width 16:" not in proc.stdout and not (tmp_path / "x").exists()
