"""experiments.reproduce: the comparison rules on hand-made numbers, the record schema,
the docs table, the command line, and every registered paper at the smoke size."""

from __future__ import annotations

import json
import math
import os

import pytest
from conftest import run_cli

from experiments.reproduce import PAPERS, Context
from experiments.reproduce.claims import judge
from experiments.reproduce.docs import markdown
from experiments.reproduce.record import FIGURE_FILE, JSON_FILE, check_record, read_record
from experiments.reproduce.runner import run_paper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("rule, paper, measured, tol, passed", [
  ("abs", 1.0, 1.09, 0.1, True), ("abs", 1.0, 1.11, 0.1, False),
  ("abs", -0.5, -0.45, 0.1, True),
  ("rel", 10.0, 11.9, 0.2, True), ("rel", 10.0, 12.1, 0.2, False),
  ("rel", -2.0, -2.3, 0.2, True),
  ("factor", 4.0, 7.9, 2.0, True), ("factor", 4.0, 1.9, 2.0, False),
  ("factor", 4.0, 8.1, 2.0, False),
  ("at_least", 2.0, 1.95, 0.1, True), ("at_least", 2.0, 1.85, 0.1, False),
  ("at_most", 2.0, 2.05, 0.1, True), ("at_most", 2.0, 2.2, 0.1, False),
  ("above", 0.0, 1e-3, 0.0, True), ("above", 0.0, 0.0, 0.0, False),
])
def test_rules_judge_hand_made_numbers(rule, paper, measured, tol, passed):
  c = judge("x", "a claim", "Fig. 1", paper, measured, tol, rule)
  assert c.passed is passed
  assert c.measured == pytest.approx(measured)


@pytest.mark.parametrize("measured", [float("nan"), float("inf"), None])
def test_a_missing_or_nonfinite_measurement_fails_and_says_so(measured):
  c = judge("x", "a claim", "Fig. 1", 1.0, measured, 10.0, "abs")
  assert not c.passed and c.measured is None
  assert "not measured" in c.note


def test_a_curve_is_judged_by_its_statistic_and_kept_whole():
  curve = [0.2, 0.6, 1.02, float("nan"), 0.97]
  held = judge("x", "hovers", "Fig. 1", 1.0, curve, 0.05, compared=1.0, statistic="median")
  assert held.passed and held.measured[:3] == [0.2, 0.6, 1.02] and held.measured[3] is None
  failed = judge("x", "hovers", "Fig. 1", 1.0, curve, 0.05, compared=0.6,
                 why_failed="it stayed low")
  assert not failed.passed and "it stayed low" in failed.note
  assert held.compared == 1.0


def test_numpy_numbers_are_numbers_and_numpy_arrays_are_curves():
  import numpy as np

  scalar = judge("x", "c", "s", 1.0, np.float32(1.05), 0.1)
  assert scalar.passed and scalar.measured == pytest.approx(1.05) and scalar.compared is None
  curve = judge("x", "c", "s", 1.0, np.array([0.5, 1.0]), 0.1, compared=np.float64(1.0))
  assert curve.passed and curve.measured == [0.5, 1.0]


def test_a_factor_rule_needs_a_factor_above_one():
  with pytest.raises(ValueError, match="factor"):
    judge("x", "c", "s", 1.0, 1.0, 0.5, "factor")


def _record(claims, paper="p1", runtime=12.0):
  return {"paper": paper, "title": "T", "citation": "C", "quick": True, "claims": claims,
          "runtime_s": runtime, "command": f"python -m experiments.reproduce --paper={paper}",
          "commit": "abc1234"}


def test_the_schema_check_finds_each_defect():
  good = judge("a", "c", "s", 1.0, 1.0, 0.1).to_json()
  assert check_record(_record([good])) == []
  bad = dict(good, passed="yes")
  del bad["source"]
  problems = check_record({**_record([bad, good]), "quick": 1})
  assert any("'quick'" in p for p in problems)
  assert any("misses 'source'" in p for p in problems)
  assert any("'passed' is not a bool" in p for p in problems)
  assert check_record(_record([good, good])) == ["claim names repeat: ['a', 'a']"]


def test_the_docs_table_has_one_row_per_claim_with_verdict_and_why():
  held = judge("gain", "clipping helps", "Tab. 1", 0.2, 0.3, 0.0, "at_least").to_json()
  failed = judge("slope", "decays", "Fig. 2", -1.0, -0.2, 0.1,
                 why_failed="the ratio grew; tried T up to 50").to_json()
  text = markdown([_record([held, failed], "p1", 30.0), _record([held], "p2", 5.0)],
                  35.0, "python -m experiments.reproduce --all --quick", "runs/x")
  rows = [line for line in text.splitlines() if line.startswith("| p")]
  claim_rows = [r for r in rows if "`" in r]
  assert len(claim_rows) == 3
  assert "**failed**: the ratio grew; tried T up to 50" in claim_rows[1]
  assert "**held**" in claim_rows[0]
  assert "2 of 3 claims held" in text
  assert "## Adding a paper" in text


def test_list_names_every_paper_and_a_bad_id_is_one_line():
  out = run_cli("experiments.reproduce", "--list")
  assert out.returncode == 0
  listed = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
  assert listed == PAPERS.names()
  bad = run_cli("experiments.reproduce", "--paper=greydanus202")
  assert bad.returncode == 2
  assert len(bad.stderr.strip().splitlines()) == 1
  assert "did you mean 'greydanus2020'" in bad.stderr


@pytest.mark.parametrize("paper_id", PAPERS.names())
def test_every_paper_runs_at_the_smoke_size_and_writes_a_valid_record(paper_id, tmp_path):
  ctx = Context(str(tmp_path / paper_id), quick=True, smoke=True)
  record = run_paper(PAPERS.get(paper_id), ctx, commit="test")
  assert check_record(record) == []
  assert read_record(ctx.workdir) == json.loads(json.dumps(record))
  assert record["paper"] == paper_id and record["quick"] is True
  assert os.path.getsize(os.path.join(ctx.workdir, FIGURE_FILE)) > 10_000
  assert os.path.exists(os.path.join(ctx.workdir, JSON_FILE))
  for c in record["claims"]:
    assert isinstance(c["paper_value"], float) and math.isfinite(c["paper_value"])
