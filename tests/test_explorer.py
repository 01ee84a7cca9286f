"""index.html, the explorer (gradlab.viz.explorer): its data, its live view, and the page
rendered in headless Chromium (skipped, with the reason, where no browser is installed)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import hand_sweep, tiny_cached

from gradlab import results
from gradlab.panels import AxisSpec
from gradlab.sweep import run_sweep
from gradlab.viz import draw_all
from gradlab.viz.explorer import browser as browser_lib
from gradlab.viz.explorer import live, payload, report_html, trajectories
from gradlab.viz.explorer.page import write_index
from gradlab.viz.maps import MapLine

AXES = ["init.sigma_w", "optimizer.learning_rate", "optimizer.name"]


def _payload_of(html: str) -> dict:
  text = re.search(r"window\.GRADLAB = (.*?);</script>", html, re.S).group(1)
  return json.loads(text.replace("<\\/", "</"))


def test_payload_has_one_cell_per_grid_point_and_majority_labels():
  df = hand_sweep(("sgd", "adam"), seeds=3)
  # one cell's three seeds disagree 2:1 -> the majority; a 1:1:1 cell -> the worst
  first = (df["init.sigma_w"] == 0.5) & (df["optimizer.learning_rate"] == 1e-2) & (
    df["optimizer.name"] == "sgd")
  df.loc[first[first].index[0], "regime"] = "exploding"
  data = payload.build(df, AXES)
  assert [p["title"] for p in data["panels"]] == ["optimizer.name=adam", "optimizer.name=sgd"]
  assert sum(len(p["ix"]) for p in data["panels"]) == 2 * 4 * 3
  sgd = data["panels"][1]
  k = next(k for k in range(len(sgd["ix"])) if (sgd["ix"][k], sgd["iy"][k]) == (0, 1))
  assert len(sgd["runs"][k]) == 3
  assert data["regimes"][sgd["values"]["regime"][k]] == "trained"  # 2 of 3
  diverged = [v for p in data["panels"] for v in p["values"]["final_loss"] if v == "nonfinite"]
  assert len(diverged) == 2 * 4  # the diverged cells of hand_sweep, per optimizer
  assert data["n_runs"] == len(df) and len(data["runs"]["regime"]) == len(df)


def test_theory_lines_sit_between_cells_by_log_interpolation():
  spec = AxisSpec.of(pd.Series([0.25, 0.5, 1.0, 2.0, 4.0]))
  assert payload.axis_position(spec, [1.0, math.sqrt(2.0), 8.0]) == pytest.approx([2, 2.5, 5])
  df = hand_sweep()
  line = MapLine("critical", {"init.sigma_w": [math.sqrt(2.0)]})
  data = payload.build(df, AXES[:2], lambda values: [line])
  assert data["panels"][0]["lines"] == [{"label": "critical", "color": line.color,
                                         "dash": "solid", "vertical": [1.5]}]


def test_page_data_survives_a_script_closing_tag(tmp_path):
  df = hand_sweep()
  df["explosion_layer"] = "</script><b>"
  data = payload.build(df, AXES[:2])
  from gradlab.viz.explorer.page import _script_json

  assert "</script>" not in _script_json(data)
  assert json.loads(_script_json(data).replace("<\\/", "</"))["runs"]["explosion_layer"][0] \
    == "</script><b>"


def test_report_markdown_becomes_tables_lists_and_escaped_text():
  md = ("## Which optimizer to choose\n\n**Recommended: adam** <x>\n\n- **a** `b`\n\n"
        "| variant | share |\n| --- | --- |\n| sgd \\| clip=1 | 30% |\n\n## Axes\n\n- `x`: 3")
  first, rest = report_html.split_section(md, "## Which optimizer to choose")
  html = report_html.to_html(first, fold_tables=True)
  assert "<b>Recommended: adam</b> &lt;x&gt;" in html
  assert "<td>sgd | clip=1</td><td>30%</td>" in html and "<details>" in html
  assert "<li><b>a</b> <code>b</code></li>" in html
  assert "Axes" in rest and "Which optimizer" not in rest


def test_trajectory_scripts_thin_long_runs_and_keep_ends():
  steps = 1000
  arrays = {"run_id": np.array([7]), "step": np.arange(steps)[None],
            "loss": np.linspace(2.0, 1.0, steps)[None],
            "grad_norm": np.full((1, steps), np.nan),
            "layer_names": np.array(["a", "b"])}
  curves = trajectories.run_curves(arrays, 0)
  assert len(curves["step"]) == trajectories.MAX_POINTS
  assert curves["step"][0] == 0 and curves["step"][-1] == steps - 1
  assert curves["loss"][0] == 2.0 and curves["loss"][-1] == 1.0
  assert curves["grad_norm"] == [None] * trajectories.MAX_POINTS  # NaN -> a gap
  assert curves["layer_names"] == ["a", "b"]


def test_live_index_is_throttled(monkeypatch):
  calls = []
  clock = [100.0]
  monkeypatch.setattr(live, "write_index", lambda wd, partial: calls.append(partial))
  monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
  view = live.LiveIndex("wd", min_interval_s=5.0)
  for t in (100.0, 101.0, 104.9, 105.1, 106.0, 111.0):
    clock[0] = t
    view(pd.DataFrame())
  assert calls == [True, True, True]  # at 100, 105.1 and 111


@pytest.fixture(scope="module")
def sweep_dir(cache, tmp_path_factory) -> str:
  """A tiny 2 x 2 x 2 sweep (4 chunks) written to disk with its figures and index.html."""
  wd = str(tmp_path_factory.mktemp("explore"))
  cfg = tiny_cached(cache, {"init.sigma_w": [0.5, 2.0],
                            "optimizer.learning_rate": [1e-2, 1.0],
                            "optimizer.name": ["sgd", "adam"]})
  cfg.sweep.chunk_size = 2
  pages = []
  run_sweep(cfg, wd, progress=False,
            on_chunk=lambda rows: pages.append(Path(write_index(wd, partial=True)).read_text()))
  draw_all(wd)
  with open(os.path.join(wd, "partial.json"), "w") as f:
    json.dump(pages, f)
  return wd


def test_sweep_writes_a_partial_page_per_chunk_then_the_final_one(sweep_dir):
  with open(os.path.join(sweep_dir, "partial.json")) as f:
    pages = json.load(f)
  done = [len(_payload_of(p)["runs"]["regime"]) for p in pages]
  assert done == sorted(done) and done[-1] == 8 and len(pages) == 4
  assert all("Partial:</b> " in p and " of 8 runs" in p for p in pages)
  final = Path(sweep_dir, "index.html").read_text()
  assert "Partial:" not in final and "Which optimizer to choose" in final
  assert os.path.exists(os.path.join(sweep_dir, "explorer", "plotly.min.js"))
  data = _payload_of(final)
  scripts = {s for s in data["runs"]["trajectory"]}
  assert all(os.path.exists(os.path.join(sweep_dir, s)) for s in scripts)
  assert "https://" not in final.split("<script>window.GRADLAB")[0]  # nothing from the net


def test_index_html_in_headless_chromium(sweep_dir):
  """One cell per run, no script error, and a click on a cell draws that run's curves
  (its loss curve is the run's own, from its trajectory file)."""
  browser, why = browser_lib.headless_chromium()
  if browser is None:
    pytest.skip(why)
  try:
    browser_lib.open_page(browser, os.path.join(sweep_dir, "index.html"))
    api = "return window.gradlabExplorer"
    assert browser.execute_script(f"{api}.cellCount()") == 8
    assert browser.execute_script(f"{api}.runCount()") == 8
    heat = browser.execute_script(
      "return document.getElementById('map').data.filter(t => t.type === 'heatmap')"
      ".map(t => t.z.flat().filter(v => v !== null).length)")
    assert sum(heat) == 8
    browser_lib.click_cell(browser, 1, 1, 1)  # panel sgd, sigma_w 2, lr 1
    title = browser.find_element("id", "cell").text
    assert "init.sigma_w = 2" in title and "optimizer.learning_rate = 1" in title
    assert "optimizer.name = sgd" in title
    loss = browser.execute_script("return document.getElementById('loss').data[0].y")
    df = results.load(sweep_dir)
    run = df[(df["init.sigma_w"] == 2.0) & (df["optimizer.learning_rate"] == 1.0)
             & (df["optimizer.name"] == "sgd")].iloc[0]
    expected = results.load_trajectory(sweep_dir, int(run["run_id"]))["loss"]
    assert len(loss) == len(expected)
    assert [v if v is None else pytest.approx(v, rel=1e-3) for v in loss] == [
      None if not np.isfinite(v) else float(v) for v in expected]
    assert not browser_lib.severe_errors(browser)
  finally:
    browser.quit()
