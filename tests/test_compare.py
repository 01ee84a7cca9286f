"""Comparing two sweeps (gradlab.compare, gradlab.viz.compare, experiments.compare) on
hand-made results folders: nothing here trains."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import assert_titles_fit, run_cli
from conftest import hand_sweep as _sweep

from gradlab import compare, results
from gradlab.registry import ConfigError
from gradlab.viz.compare import compare_figure

AXES = ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]
SIGMAS, LRS = (0.5, 1.0, 2.0, 4.0), (1e-3, 1e-2, 1e-1)


@pytest.fixture(autouse=True)
def _no_leaked_figures():
  yield
  assert plt.get_fignums() == [], "a plotting function left a figure open"


def _set(df: pd.DataFrame, sigma_w: float, lr: float, regime: str, opt: str = "sgd"
         ) -> pd.DataFrame:
  """`df` with the runs of one cell relabelled `regime`."""
  out = df.copy()
  at = ((out["init.sigma_w"] == sigma_w) & (out["optimizer.learning_rate"] == lr)
        & (out["optimizer.name"] == opt))
  assert at.any()
  out.loc[at, "regime"] = regime
  return out


def _remedy(df: pd.DataFrame, opt: str = "sgd") -> pd.DataFrame:
  """hand_sweep's cells (sgd: stalled at lr 1e-3, diverged where lr * sigma_w^2 >= 0.1,
  trained elsewhere) with three changed: trained -> diverged, stalled -> trained,
  diverged -> stalled."""
  df = _set(df, 1.0, 1e-2, "diverged", opt)  # worse, stable->unstable
  df = _set(df, 0.5, 1e-3, "trained", opt)  # better, stays stable
  return _set(df, 4.0, 1e-2, "stalled", opt)  # better, unstable->stable


def _write_sweep(workdir, df: pd.DataFrame, axes=AXES, grid=None) -> str:
  """A sweep folder as experiments.sweep leaves it (config.json, results/), from `df`."""
  grid = grid or {a: pd.unique(df[a]).tolist() for a in axes}
  results.write_json(os.path.join(workdir, "config.json"),
                     {"axes": list(axes), "config": {"sweep": {"axes": grid}}})
  results.write_chunk(str(workdir), 0, 0, df, None)
  return str(workdir)


def test_trained_to_diverged_is_worse_and_a_stability_flip():
  a = _sweep()
  got = compare.compare_runs(a, _remedy(a), AXES)
  assert got.counts == compare.CompareCounts(cells=12, changed=3, better=2, worse=1,
                                             to_unstable=1, to_stable=1, only_a=0, only_b=0)
  cells = got.cells.set_index(["init.sigma_w", "optimizer.learning_rate"])
  assert cells.loc[(1.0, 1e-2), ["regime_a", "regime_b", "direction", "flip"]].tolist() == [
    "trained", "diverged", "worse", compare.TO_UNSTABLE]
  assert cells.loc[(0.5, 1e-3), ["direction", "flip"]].tolist() == ["better", ""]
  assert cells.loc[(4.0, 1e-2), "flip"] == compare.TO_STABLE
  assert sorted(cells.index[cells["changed"]]) == [(0.5, 1e-3), (1.0, 1e-2), (4.0, 1e-2)]
  assert set(cells.loc[~cells["changed"], "direction"]) == {"same"}
  t = got.transitions
  assert int(t.to_numpy().sum()) == got.counts.cells == 12
  assert t.loc["trained", "diverged"] == 1 and t.loc["diverged", "stalled"] == 1
  assert t.loc["trained", "trained"] == 3  # 4 trained in A, one now diverged
  assert int(np.trace(t.to_numpy())) == 12 - got.counts.changed


def test_a_cell_of_several_runs_takes_its_majority_ties_to_the_worse():
  a, b = _sweep(seeds=2), _sweep(seeds=2)
  # A: one of two seeds diverged at (1.0, 1e-2): a tie, so the cell is diverged.
  first = a.index[(a["init.sigma_w"] == 1.0) & (a["optimizer.learning_rate"] == 1e-2)][0]
  a.loc[first, "regime"] = "diverged"
  got = compare.compare_runs(a, b, AXES)
  cell = got.cells.set_index(["init.sigma_w", "optimizer.learning_rate"]).loc[(1.0, 1e-2)]
  assert (cell["regime_a"], cell["regime_b"], cell["n_runs_a"]) == ("diverged", "trained", 2)
  assert cell["uncertain_a"] and not cell["uncertain_b"]
  assert (cell["direction"], cell["flip"]) == ("better", compare.TO_STABLE)
  assert got.counts.changed == 1


def test_cells_of_one_sweep_only_are_counted_apart_not_compared():
  a = _sweep()
  b = _remedy(a)[lambda d: d["optimizer.learning_rate"] != 1e-1]  # B stopped early
  got = compare.compare_runs(a, b, AXES)
  assert (got.counts.cells, got.counts.only_a, got.counts.only_b) == (8, 4, 0)
  assert int(got.transitions.to_numpy().sum()) == 8
  only = got.cells[got.cells["present"] == compare.A_ONLY]
  assert set(only["optimizer.learning_rate"]) == {1e-1}
  assert only["regime_b"].isna().all() and not only["changed"].any()
  assert set(only["direction"]) == {""}


def test_numbers_equal_to_a_relative_tolerance_are_the_same_cell():
  a = _sweep()
  b = a.assign(**{"optimizer.learning_rate": a["optimizer.learning_rate"] * (1 + 1e-9)})
  compare.check_same_grid({k: pd.unique(a[k]) for k in AXES},
                          {k: pd.unique(b[k]) for k in AXES})
  got = compare.compare_runs(a, b, AXES)
  assert (got.counts.cells, got.counts.changed, got.counts.only_b) == (12, 0, 0)
  compare.check_same_grid({"model.depth": [2, 4]}, {"model.depth": [2.0, 4.0]})


@pytest.mark.parametrize("grid_b, message", [
  ({"init.sigma_w": SIGMAS, "optimizer.learning_rate": LRS[:2]},
   "sweeps differ on axis 'optimizer.learning_rate': A has 3 values 1e-3..0.1, B has 2 "
   "values 1e-3..0.01 (only in A: 0.1)"),
  ({"init.sigma_w": (0.5, 1.0, 2.0, 3.0), "optimizer.learning_rate": LRS},
   "sweeps differ on axis 'init.sigma_w': A has 4 values 0.5..4, B has 4 values 0.5..3 "
   "(only in A: 4; only in B: 3)"),
  ({"init.sigma_w": SIGMAS, "optimizer.name": ["sgd"]},
   "the sweeps differ in their axes: only A sweeps 'optimizer.learning_rate'; only B "
   "sweeps 'optimizer.name'"),
  ({"optimizer.learning_rate": LRS, "init.sigma_w": SIGMAS},
   "the sweeps order their axes differently"),
])
def test_grids_that_differ_are_refused_with_one_line_saying_how(grid_b, message):
  grid_a = {"init.sigma_w": SIGMAS, "optimizer.learning_rate": LRS}
  with pytest.raises(ConfigError) as e:
    compare.check_same_grid(grid_a, grid_b)
  assert str(e.value).startswith(message) and "\n" not in str(e.value)


def _mesh_grid(ax, gid: str) -> np.ma.MaskedArray:
  mesh = next(c for c in ax.collections if c.get_gid() == gid)
  return np.ma.asarray(mesh.get_array()).reshape(len(LRS), len(SIGMAS))


def test_difference_panel_colors_exactly_the_changed_cells():
  a = pd.concat([_sweep(), _sweep(("adam",))], ignore_index=True)
  b = _remedy(a)
  fig = compare_figure(compare.compare_runs(a, b, AXES), "none", "clip")
  try:
    titled = {ax.get_title().replace("\n", ", "): ax for ax in fig.axes if ax.get_title()}
    assert len(titled) == 6  # two panels (adam, sgd) x (A, B, difference)
    diff = titled["B vs A: 3 of 12 changed, optimizer.name=sgd"]
    changed = _mesh_grid(diff, "changed")
    colored = {(SIGMAS[x], LRS[y]) for y, x in zip(*np.nonzero(~changed.mask), strict=True)}
    assert colored == {(0.5, 1e-3), (1.0, 1e-2), (4.0, 1e-2)}
    worse_flip = changed[LRS.index(1e-2), SIGMAS.index(1.0)]
    assert worse_flip == 3  # CHANGES[("worse", "stable->unstable")]
    unchanged = _mesh_grid(diff, "unchanged")
    assert not (~unchanged.mask & ~changed.mask).any()
    assert int((~unchanged.mask).sum()) == 12 - 3
    hatched = [p for p in diff.patches if p.get_hatch() == "///"]
    assert len(hatched) == 2  # the two stability flips
    assert not np.any(~_mesh_grid(titled["B vs A: 0 of 12 changed, optimizer.name=adam"],
                                  "changed").mask)
    regime_b = _mesh_grid(titled["B: clip, optimizer.name=sgd"], "regime_b")
    assert regime_b[LRS.index(1e-2), SIGMAS.index(1.0)] == 4  # diverged
  finally:
    plt.close(fig)


def test_compare_titles_never_overlap():
  base = pd.concat([_sweep(("sgd", "adam", "lion"))], ignore_index=True)
  df = pd.concat([base.assign(**{"model.parameterization": p}) for p in ("standard", "mup")],
                 ignore_index=True)
  axes = [*AXES, "model.parameterization"]
  fig = compare_figure(compare.compare_runs(df, _remedy(df), axes),
                       "20261206-060026-default", "20261206-061500-default-clip1-warmup100-seed3")
  try:
    boxes = assert_titles_fit(fig, 18)
    renderer = fig.canvas.get_renderer()
    headline = fig._suptitle.get_window_extent(renderer)
    assert not headline.overlaps(fig.legends[0].get_window_extent(renderer))
    assert not any(headline.overlaps(box) for box in boxes)
    assert fig.get_size_inches()[1] >= 6 * 2.8  # a row per panel (6), each >= 2.8 in
  finally:
    plt.close(fig)


def _run(*args):
  return run_cli("experiments.compare", *args)


def test_compare_command_writes_the_figure_and_the_counts(tmp_path):
  a = _sweep()
  wd_a = _write_sweep(tmp_path / "none", a)
  wd_b = _write_sweep(tmp_path / "clip", _remedy(a))
  out = _run(f"--workdirs={wd_a},{wd_b}")
  assert out.returncode == 0, out.stderr[-2000:]
  folder = tmp_path / "compare-none-vs-clip"  # the default: beside B
  assert out.stdout.splitlines() == [
    f"wrote {folder / 'compare.png'}", f"wrote {folder / 'compare.md'}",
    "clip vs none: 3 of 12 cells changed regime, 2 better, 1 worse (1 stable->unstable, "
    "1 unstable->stable)"]
  with open(folder / "compare.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  text = (folder / "compare.md").read_text()
  assert "| changed regime | 3 (25%) |" in text and "| worse in B | 1 |" in text
  assert "| 1 | 0.01 | sgd | trained | diverged | worse | stable->unstable |" in text
  assert "| total | 4 | 4 | 4 | 12 |" in text  # transitions: B has 4 of each regime


def test_mismatched_axes_exit_2_with_one_line_and_write_nothing(tmp_path):
  a = _sweep()
  wd_a = _write_sweep(tmp_path / "a", a)
  short = a[a["optimizer.learning_rate"] < 0.05]
  wd_b = _write_sweep(tmp_path / "b", short)
  out = run_cli("experiments.compare", f"--workdirs={wd_a},{wd_b}", f"--out={tmp_path / 'out'}")
  assert out.returncode == 2 and out.stdout == ""
  assert out.stderr.splitlines() == [
    "error: sweeps differ on axis 'optimizer.learning_rate': A has 3 values 1e-3..0.1, B "
    "has 2 values 1e-3..0.01 (only in A: 0.1)"]
  assert sorted(os.listdir(tmp_path)) == ["a", "b"]


@pytest.mark.parametrize("case, message", [
  ("no flag", "--workdirs takes exactly two sweep folders, --workdirs=A,B; got none"),
  ("one", "--workdirs takes exactly two sweep folders, --workdirs=A,B; got 1: "),
  ("missing", "does not exist; give a sweep folder"),
  ("not a sweep", "holds no config.json: not a gradlab sweep folder"),
  ("no runs", "holds no finished runs yet; nothing to compare"),
])
def test_bad_workdirs_exit_2_with_one_line(tmp_path, case, message):
  good = _write_sweep(tmp_path / "good", _sweep())
  empty = tmp_path / "empty"
  results.write_json(str(empty / "config.json"), {"axes": AXES, "config": {}})
  args = {"no flag": [], "one": [f"--workdirs={good}"],
          "missing": [f"--workdirs={good},{tmp_path / 'nope'}"],
          "not a sweep": [f"--workdirs={tmp_path},{good}"],
          "no runs": [f"--workdirs={good},{empty}"]}[case]
  before = sorted(os.listdir(tmp_path))
  out = run_cli("experiments.compare", *args)
  assert out.returncode == 2 and "Traceback" not in out.stderr
  lines = out.stderr.splitlines()
  assert len(lines) == 1 and message in lines[0], out.stderr
  assert sorted(os.listdir(tmp_path)) == before
