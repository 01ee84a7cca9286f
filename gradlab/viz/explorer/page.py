"""WORKDIR/index.html: one page to explore a sweep, offline.

The page inlines its data (`gradlab.viz.explorer.payload`), its script (explorer.js)
and its style (explorer.css); plotly.js (the maintained plotting library it draws with)
is copied beside it as WORKDIR/explorer/plotly.min.js from the installed `plotly`
package, and each chunk's trajectories become WORKDIR/explorer/traj/chunk-*.js, loaded
when a cell is clicked (`gradlab.viz.explorer.trajectories`). Nothing is fetched from
the network: the folder can be copied and opened anywhere.

Below the map: report.md's sections as HTML, its "Which optimizer to choose" section
first (above the map). While a sweep runs (`partial`), the page says how many runs are
done, that it is partial, and reloads itself every 15 s until a cell is clicked.
Every write is atomic (temporary name, then rename), so a browser never reads half a
page.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import shutil
from importlib import resources
from typing import Any

import pandas as pd

from gradlab import results
from gradlab.registry import ConfigError
from gradlab.viz import overlays
from gradlab.viz.explorer import payload, report_html, trajectories

INDEX = "index.html"
PLOTLY_FILE = os.path.join("explorer", "plotly.min.js")
RECOMMENDATION_HEADING = "## Which optimizer to choose"


def _asset(name: str) -> str:
  return resources.files("gradlab.viz.explorer").joinpath(name).read_text(encoding="utf-8")


def plotly_source() -> str:
  """Path of plotly.min.js inside the installed plotly package."""
  try:
    import plotly
  except ImportError as e:
    raise ConfigError("index.html needs the 'plotly' package (pip install -r "
                      "requirements.txt)") from e
  path = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
  if not os.path.exists(path):
    raise ConfigError(f"the plotly package has no '{path}'; reinstall plotly")
  return path


def copy_plotly(workdir: str) -> str:
  """Copies plotly.min.js beside index.html unless an identical-size copy is there."""
  src, dst = plotly_source(), os.path.join(workdir, PLOTLY_FILE)
  if not (os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src)):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{dst}.tmp{os.getpid()}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
  return dst


def _script_json(obj: Any) -> str:
  """JSON safe inside a <script> element."""
  return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _header(workdir: str, meta: dict[str, Any], df: pd.DataFrame, partial: bool) -> str:
  name = os.path.basename(os.path.abspath(workdir))
  total = int(meta.get("n_points") or len(df))
  commit = str(meta.get("git_commit") or "")[:10]
  when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
  parts = [f"<h1>gradlab sweep: {html.escape(name)}</h1>",
           f"<p class='note'>{len(df)} runs over {', '.join(map(html.escape, meta['axes']))}"
           + (f"; commit {html.escape(commit)}" if commit else "")
           + f"; page written {when}.</p>"]
  if partial:
    parts.append(f"<p class='partial' id='partial'><b>Partial:</b> {len(df)} of {total} runs "
                 "done. The sweep is still running; this page is rewritten after each chunk "
                 "and reloads itself every 15 s until you click a cell.</p>")
  return "\n".join(parts)


def render(workdir: str, meta: dict[str, Any], df: pd.DataFrame, partial: bool) -> str:
  """The HTML text of index.html for results `df` of `workdir`."""
  axes = list(meta.get("axes") or [])
  if not axes:
    raise ConfigError(f"'{workdir}' has no swept axes; index.html draws a sweep's map")
  lines = overlays.lines_for_workdir(meta, axes, df)
  data = payload.build(df, axes, lines,
                       lambda d: trajectories.run_scripts(workdir, d))
  data["partial"] = partial
  report_path = os.path.join(workdir, "report.md")
  recommendation, rest = "", ""
  if os.path.exists(report_path) and not partial:
    with open(report_path, encoding="utf-8") as f:
      section, remainder = report_html.split_section(f.read(), RECOMMENDATION_HEADING)
    recommendation = report_html.to_html(section, fold_tables=True)
    rest = report_html.to_html(remainder)
  elif partial:
    rest = "<p class='note'>report.md's tables appear here when the sweep ends.</p>"
  return "\n".join([
    "<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
    f"<title>gradlab: {html.escape(os.path.basename(os.path.abspath(workdir)))}</title>",
    f"<style>{_asset('explorer.css')}</style>",
    f"<script src='{PLOTLY_FILE.replace(os.sep, '/')}'></script>", "</head><body>",
    _header(workdir, meta, df, partial),
    f"<section id='recommendation'>{recommendation}</section>",
    "<div id='controls'>colour by <select id='quantity'></select><span id='legend'></span>"
    "</div>",
    "<div id='map'></div>",
    "<div id='detail'><div id='cell'><p class='note'>Hover over a cell for its numbers; click "
    "it for its runs' curves.</p></div><div id='plots'></div></div>",
    f"<section id='report'>{rest}</section>",
    f"<script>window.GRADLAB = {_script_json(data)};</script>",
    f"<script>{_asset('explorer.js')}</script>",
    "</body></html>", ""])


def write_index(workdir: str, partial: bool = False) -> str:
  """Writes WORKDIR/index.html (and what it loads) from the results on disk; returns
  its path. `partial`: the sweep is still running (module docstring)."""
  meta = results.read_config(workdir)
  df = results.load(workdir)
  if df.empty:
    raise ConfigError(f"'{workdir}' holds no finished runs yet; nothing to explore")
  copy_plotly(workdir)
  trajectories.write_scripts(workdir)
  path = os.path.join(workdir, INDEX)
  results.write_text(path, render(workdir, meta, df, partial))
  os.chmod(path, 0o644)  # a page to be read by anyone who can read the folder
  return path
