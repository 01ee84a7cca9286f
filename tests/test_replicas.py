"""sweep.replicas: every grid point run with R seeds as lanes of its group, the majority
label and agreement per cell (gradlab.panels), the uncertain fraction in report.md and
the boundary search on the majority of the replicas."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from gradlab import panels, results
from gradlab.registry import ConfigError
from gradlab.report import write_report
from gradlab.sweep import make_plan, run_sweep
from gradlab.sweep.boundary import bisect, replica_majority

AXES = {"init.sigma_w": [0.5, 1.0, 2.0], "optimizer.learning_rate": [1e-3, 1e-2],
        "optimizer.name": ["sgd", "adam"]}


def _lanes(plan) -> dict[int, tuple]:
  """run_id -> (group, seed, seed hparam, replica or None, axis values)."""
  out = {}
  for g in plan.groups:
    for k, run_id in enumerate(g.run_ids):
      replica = g.extra["replica"][k] if "replica" in g.extra else None
      out[run_id] = (g.index, g.seeds[k], g.hparams["seed"][k], replica,
                     tuple(sorted(g.axis_values[k].items())))
  return out


def test_one_replica_leaves_the_plan_as_without_replicas():
  """replicas=1: run_id = position in the product of the axes, seed = train.seed, no
  replica column: the plan (and so every row) of a sweep without replicas."""
  cfg = tiny_config(AXES, train=dict(seed=5))
  lanes = _lanes(make_plan(cfg))
  combos = list(itertools.product(*AXES.values()))
  assert sorted(lanes) == list(range(len(combos)))
  for run_id, combo in enumerate(combos):
    group, seed, seed_hp, replica, values = lanes[run_id]
    assert values == tuple(sorted(zip(AXES, combo, strict=True)))
    assert (seed, seed_hp, replica) == (5, 5.0, None)
    assert group == AXES["optimizer.name"].index(combo[2])
  assert all(g.extra == {} for g in make_plan(cfg).groups)


@pytest.mark.parametrize("seed_axis", [False, True])
def test_replicas_are_lanes_with_consecutive_seeds(seed_axis):
  axes = {**AXES, "train.seed": [10, 20]} if seed_axis else AXES
  one = _lanes(make_plan(tiny_config(axes, train=dict(seed=7))))
  cfg = tiny_config(axes, train=dict(seed=7), sweep=dict(replicas=3))
  plan = make_plan(cfg)
  lanes = _lanes(plan)
  assert len(plan.groups) == 2  # one per optimizer, as without replicas: no extra compile
  assert plan.n_points == 3 * len(one)
  assert sorted(lanes) == list(range(3 * len(one)))  # dense run ids
  for run_id, (group, seed, seed_hp, replica, values) in lanes.items():
    point, r = divmod(run_id, 3)
    base = one[point]
    assert (group, values, replica) == (base[0], base[4], r)
    assert seed == base[1] + r and seed_hp == seed  # train.seed (or its axis value) + r


@pytest.mark.parametrize("replicas, match", [(0, "positive integer"), (True, "positive")])
def test_bad_replicas_fail_before_compile(replicas, match):
  with pytest.raises(ConfigError, match=f"sweep.replicas.*{match}"):
    make_plan(tiny_config(AXES, sweep=dict(replicas=replicas)))


def test_replica_sweep_runs_each_seed_once_per_compile_and_resumes(tmp_path):
  axes = {"init.sigma_w": [0.7, 1.9], "optimizer.name": ["sgd", "adam"]}
  cfg = tiny_config(axes, sweep=dict(replicas=2))
  stats = run_sweep(cfg, str(tmp_path / "r"), progress=False)
  assert (stats.n_points, stats.n_groups, stats.n_compiles) == (8, 2, 2)
  df = results.load(str(tmp_path / "r")).sort_values("run_id")
  assert df["run_id"].tolist() == list(range(8))
  assert df["replica"].tolist() == [0, 1] * 4 and df["seed"].tolist() == [0, 1] * 4
  # a replica is the run of its seed: the same numbers as an explicit seed axis
  seeds = run_sweep(tiny_config({**axes, "train.seed": [0, 1]}), str(tmp_path / "s"),
                    progress=False)
  assert seeds.n_compiles == 2
  other = results.load(str(tmp_path / "s"))
  key = ["init.sigma_w", "optimizer.name", "seed"]
  joined = df.merge(other, on=key, suffixes=("", "_axis"))
  assert len(joined) == 8
  np.testing.assert_allclose(joined["final_loss"], joined["final_loss_axis"], rtol=1e-6)
  again = run_sweep(cfg, str(tmp_path / "r"), progress=False)
  assert (again.n_skipped, again.n_compiles) == (8, 0)  # a rerun plans nothing


def _frame() -> pd.DataFrame:
  """Two panels of 3 x 2 cells, 3 replicas each. Panel sgd: x=1 trained, x=2 split,
  x=3 diverged; panel adam: every cell trained but one far from any boundary."""
  rows = []
  labels = {
    ("sgd", 1): ["trained"] * 3, ("sgd", 2): ["trained", "diverged", "diverged"],
    ("sgd", 3): ["diverged"] * 3, ("adam", 1): ["trained"] * 3,
    ("adam", 2): ["trained"] * 3, ("adam", 3): ["trained", "stalled", "exploding"],
  }
  for (opt, x), cell in labels.items():
    for y in (0.1, 1.0):
      for r, label in enumerate(cell):
        if (opt, x, y) == ("adam", 3, 0.1):  # only the y = 1 cell disagrees
          label = "trained"
        rows.append({"x": x, "y": y, "opt": opt, "replica": r, "regime": label})
  return pd.DataFrame(rows)


def test_cell_majority_agreement_and_neighbours():
  cells = panels.cell_regimes(_frame(), ["x", "y", "opt"])
  cells["near"] = panels.near_boundary(cells, ["x", "y", "opt"])
  got = cells.set_index(["opt", "x", "y"])
  assert got.loc[("sgd", 2, 0.1), "regime"] == "diverged"
  assert got.loc[("sgd", 2, 0.1), "n_agree"] == 2
  assert got.loc[("sgd", 2, 0.1), "agreement"] == pytest.approx(2 / 3)
  # three labels, one run each: a three-way tie goes to the worst, agreement 1/3
  assert got.loc[("adam", 3, 1.0), ["regime", "n_agree"]].tolist() == ["exploding", 1]
  assert got["uncertain"].sum() == 3
  assert set(got.index[got["uncertain"]]) == {("sgd", 2, 0.1), ("sgd", 2, 1.0),
                                              ("adam", 3, 1.0)}
  # sgd: x=1 trained | x=2 diverged | x=3 diverged -> boundary between x=1 and x=2
  near = got["near"]
  assert near[("sgd", 1, 0.1)] and near[("sgd", 2, 1.0)] and not near[("sgd", 3, 0.1)]
  # adam: (3, 1.0) exploding borders (3, 0.1) trained and (2, 1.0) trained
  assert near[("adam", 3, 1.0)] and near[("adam", 3, 0.1)] and near[("adam", 2, 1.0)]
  assert not near[("adam", 1, 0.1)] and not near[("adam", 2, 0.1)]  # no diagonal
  assert got["stability_split"].sum() == 3  # each uncertain cell mixes stable, unstable
  calm = panels.cell_regimes(pd.DataFrame({"x": [1, 1], "regime": ["trained", "stalled"]}),
                             ["x"])
  assert calm[["regime", "uncertain", "stability_split"]].values.tolist() == [
    ["stalled", True, False]]


def test_agreement_summary_and_report_give_the_uncertain_fraction(tmp_path):
  df = _frame()
  axes = ["x", "y", "opt"]
  table = panels.agreement_summary(df, axes).set_index("panel")
  assert table.loc["total", ["cells", "uncertain", "uncertain_near_boundary"]].tolist() == [
    12, 3, 3]
  assert table.loc["opt=adam", "uncertain_fraction"] == pytest.approx(1 / 6)
  assert table.loc["opt=sgd", "near_boundary"] == 4
  text = Path(write_report(str(tmp_path), df, axes, {})).read_text()
  assert "**Uncertain cells: 3 of 12 (25%).** 3 of them (100%) sit next to a boundary" in text
  assert "| **total** | 12 | 3 | 3 | 0.25 | 3 | 3 | 7 |" in text
  assert ("Labels mixed in the uncertain cells: trained + diverged: 2 cells; "
          "trained + stalled + exploding: 1 cell.") in text
  # one run per cell: nothing to agree on, no section
  single = df[df["replica"] == 0]
  assert "Agreement" not in Path(write_report(str(tmp_path), single, axes, {})).read_text()


def test_boundary_bisects_on_the_majority_of_the_replicas():
  """Three replicas per point, each stable below its own edge: the majority's edge is
  the median edge. With two replicas a 1-1 tie is unstable: the edge is the lowest."""
  edges = np.array([[1.0, 4.0, 2.0], [8.0, 3.0, 5.0], [0.5, 16.0, 16.0]])  # point x replica

  def evaluate(values):
    stable = values[:, None] < edges[:, : replicas]  # (points, replicas), point-major
    return replica_majority(stable.ravel(), replicas)

  replicas = 3
  found = bisect(evaluate, 0.1, 100.0, 3, rounds=12, log=True)
  assert list(found.status) == ["bracketed"] * 3
  np.testing.assert_allclose(found.estimate, [2.0, 5.0, 16.0], rtol=2e-3)
  replicas = 2
  found = bisect(evaluate, 0.1, 100.0, 3, rounds=12, log=True)
  np.testing.assert_allclose(found.estimate, [1.0, 3.0, 0.5], rtol=2e-3)
  assert replica_majority([True, False, True, True, False, False], 2).tolist() == [
    False, True, False]


def test_boundary_search_with_replicas_runs_every_seed_and_resumes(tmp_path):
  """Full-batch gradient descent on a quadratic diverges above 2 / lambda_max whatever
  the init: every replica agrees, so the majority bracket holds the closed form."""
  from gradlab.data import load_dataset

  x = load_dataset("gaussian_blobs").x_train.astype(np.float64)
  edge = 2.0 / float(np.linalg.eigvalsh(x.T @ x / len(x)).max())
  cfg = tiny_config({"init.sigma_w": [0.5, 2.0], "optimizer.learning_rate": [0.05, 20.0]},
                    model=dict(name="linear", use_bias=False),
                    data=dict(name="gaussian_blobs", batch_size=0),
                    train=dict(steps=200, log_every=10, loss="mse", layer_probes=False),
                    optimizer=dict(name="sgd"),
                    sweep=dict(mode="boundary", boundary_rounds=3, replicas=3))
  wd = str(tmp_path / "edge")
  stats = run_sweep(cfg, wd, progress=False)
  found = stats.boundary
  assert stats.n_compiles == 1 and found.n_runs == 2 * 3 * (2 + 3)
  assert list(found.status) == ["bracketed"] * 2
  assert np.all((found.lo <= edge) & (edge <= found.hi))
  df = results.load(wd).sort_values("run_id")
  assert df["run_id"].tolist() == list(range(30))
  assert df["replica"].tolist() == [0, 1, 2] * 10
  assert df["boundary_point"].tolist() == [0, 0, 0, 1, 1, 1] * 5
  assert df["seed"].tolist() == [0, 1, 2] * 10
  # the replicas of a point in a call ran at the same learning rate
  same = df.groupby(df["run_id"] // 3)["optimizer.learning_rate"].nunique()
  assert (same == 1).all()
  again = run_sweep(cfg, wd, progress=False)
  assert (again.n_compiles, again.n_skipped) == (0, 30)
  np.testing.assert_array_equal(again.boundary.estimate, found.estimate)
