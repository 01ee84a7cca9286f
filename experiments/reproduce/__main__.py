"""Reproduce published claims about exploding and vanishing gradients with gradlab.

    python -m experiments.reproduce --list
    python -m experiments.reproduce --paper=cohen2021 --quick     # the CPU variant
    python -m experiments.reproduce --paper=cohen2021             # paper scale (accelerator)
    python -m experiments.reproduce --all --quick                 # every paper; writes
                                                                  # docs/reproductions.md

Each paper's experiment runs through gradlab's own sweep and train machinery and is
compared claim by claim with the paper's numbers: WORKDIR/reproduction.json (schema in
`experiments.reproduce.record`) and WORKDIR/figure.png (gradlab's curve or map with the
paper's value drawn on it). `--all` writes WORKDIR/<paper>/ for each paper and the table
docs/reproductions.md (`--docs`). `--smoke` shrinks every experiment to seconds (the
tests use it; its verdicts mean nothing). How to add a paper: docs/reproductions.md.
"""

from __future__ import annotations

import datetime
import logging
import os
import time

from absl import app, flags

from experiments import cli
from gradlab import host_devices
from gradlab.registry import ConfigError

_PAPER = flags.DEFINE_string("paper", "", "The paper's ID (see --list).")
_ALL = flags.DEFINE_bool("all", False, "Run every paper and write the --docs table.")
_LIST = flags.DEFINE_bool("list", False, "Print the paper IDs, one line each, and stop.")
_QUICK = flags.DEFINE_bool("quick", False, "The CPU variant: smaller models and grids, at "
                           "most 10 minutes per paper on 2 cores, with its own tolerances.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Shrink every experiment to seconds (implies "
                           "--quick): checks the path runs, not the claims.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Output folder (default: "
                               "runs/<time>-reproduce-<paper or all>).")
_DOCS = flags.DEFINE_string("docs", os.path.join(cli.REPO, "docs", "reproductions.md"),
                            "With --all: where to write the table ('' = not written).")
_PROGRESS = flags.DEFINE_bool("progress", False, "Show each sweep's progress bar.")
_REWRITE = flags.DEFINE_bool("rewrite_docs", False, "With --all and --workdir of an earlier "
                             "--all run: rewrite the --docs table from its reproduction.json "
                             "records (their recorded runtimes and commit), running nothing.")


def _ids() -> list[str]:
  from experiments.reproduce import PAPERS

  if _ALL.value == bool(_PAPER.value):
    raise ConfigError("give either --paper=ID or --all (or --list); known papers: "
                      + ", ".join(PAPERS.names()))
  if _ALL.value:
    return PAPERS.names()
  ids = [p.strip() for p in _PAPER.value.split(",") if p.strip()]
  for pid in ids:
    PAPERS.get(pid)  # unknown -> one line with "did you mean"
  return ids


def _main() -> int:
  host_devices.configure()  # every core on the CPU (GRADLAB_HOST_DEVICES; before JAX starts)
  cli.setup_logging(chatty=True)
  from experiments.reproduce import PAPERS

  if _LIST.value:
    for pid in PAPERS.names():
      paper = PAPERS.get(pid)
      print(f"{pid:16s} {paper.summary}")
    return 0
  ids = _ids()
  if _REWRITE.value:
    return _rewrite_docs(ids)
  quick = _QUICK.value or _SMOKE.value
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  name = "all" if _ALL.value else "-".join(ids)
  workdir = _WORKDIR.value or os.path.join(
    "runs", f"{stamp}-reproduce-{name}" + ("-quick" if quick else ""))
  cli.check_workdir(workdir)
  from experiments.reproduce.docs import copy_figures, markdown, write_markdown
  from experiments.reproduce.record import git_commit

  commit = git_commit()
  start = time.perf_counter()
  folders = {pid: workdir if len(ids) == 1 and not _ALL.value else os.path.join(workdir, pid)
             for pid in ids}
  records = _run(ids, folders, quick, commit)
  total = time.perf_counter() - start
  held = sum(c["passed"] for r in records for c in r["claims"])
  n = sum(len(r["claims"]) for r in records)
  print(f"{held} of {n} claims held across {len(records)} papers in {total:.0f} s")
  for pid in ids:
    print(f"wrote {os.path.join(folders[pid], 'reproduction.json')} and figure.png")
  if _ALL.value and _DOCS.value:
    links = copy_figures(records, workdir, _DOCS.value)
    text = markdown(records, total, _all_command(quick, _SMOKE.value), workdir, links)
    print(f"wrote {write_markdown(_DOCS.value, text)}")
  return 0


def _all_command(quick: bool, smoke: bool) -> str:
  return ("python -m experiments.reproduce --all" + (" --quick" if quick else "")
          + (" --smoke" if smoke else ""))


def _rewrite_docs(ids: list[str]) -> int:
  """--rewrite_docs: the --docs table again from WORKDIR/<id>/reproduction.json."""
  from experiments.reproduce.docs import copy_figures, markdown, write_markdown
  from experiments.reproduce.record import JSON_FILE, check_record, read_record

  if not (_ALL.value and _WORKDIR.value and _DOCS.value):
    raise ConfigError("--rewrite_docs needs --all, --workdir=<an earlier --all run> and --docs")
  records = []
  for pid in ids:
    folder = os.path.join(_WORKDIR.value, pid)
    if not os.path.exists(os.path.join(folder, JSON_FILE)):
      raise ConfigError(f"'{folder}' holds no {JSON_FILE}: run --all into that workdir first")
    record = read_record(folder)
    problems = check_record(record)
    if problems:
      raise ConfigError(f"'{os.path.join(folder, JSON_FILE)}' is not a valid record: "
                        + "; ".join(problems))
    records.append(record)
  total = sum(float(r["runtime_s"]) for r in records)
  scales = {r.get("scale", "quick" if r["quick"] else "paper") for r in records}
  links = copy_figures(records, _WORKDIR.value, _DOCS.value)
  text = markdown(records, total, _all_command("paper" not in scales, "smoke" in scales),
                  _WORKDIR.value, links)
  print(f"wrote {write_markdown(_DOCS.value, text)} from {len(records)} records "
        f"(total = the sum of their runtimes)")
  return 0


def _run(ids: list[str], folders: dict[str, str], quick: bool, commit: str) -> list:
  from experiments.reproduce.runner import run_one

  return [run_one(pid, folders[pid], i, len(ids), quick, _SMOKE.value, commit,
                  _PROGRESS.value, keep_going=_ALL.value) for i, pid in enumerate(ids)]


main = cli.make_main(_main, log_level=logging.INFO, interrupted=(
  "the papers finished so far keep their reproduction.json; each sweep resumes when the "
  "same command is rerun with the same --workdir"))


if __name__ == "__main__":
  app.run(main)
