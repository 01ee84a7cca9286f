"""Compares two sweeps of one grid: their regime maps side by side and what changed.

    python -m experiments.compare --workdirs=runs/none,runs/clip
    python -m experiments.compare --workdirs=runs/old,runs/new --out=runs/new-vs-old

A is the reference (no remedy, an old commit), B the one compared with it. Writes
OUT/compare.png (per panel: A's map, B's map, the cells whose regime changed) and
OUT/compare.md (counts, the transitions table, the changed cells). OUT defaults to a
folder `compare-<name of A>-vs-<name of B>` beside B (in B's parent folder). Both
folders must sweep the same axes, in the same order, over the same values; anything
else (a missing or single folder, one that is not a sweep, axes that differ) is one
line on stderr and exit status 2, with nothing written. See docs/compare.md.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments import cli
from gradlab.registry import ConfigError

_WORKDIRS = flags.DEFINE_list(
  "workdirs", [], "Two sweep folders A,B (comma-separated): A the reference, B compared "
  "with it.")
_OUT = flags.DEFINE_string(
  "out", "", "Output folder (default: compare-<name of A>-vs-<name of B>, beside B).")


def default_out(workdir_a: str, workdir_b: str) -> str:
  """compare-<basename A>-vs-<basename B> in the folder that holds B."""
  a, b = (os.path.normpath(os.path.abspath(w)) for w in (workdir_a, workdir_b))
  return os.path.join(os.path.dirname(b), f"compare-{os.path.basename(a)}-vs-"
                      f"{os.path.basename(b)}")


def _workdirs() -> tuple[str, str]:
  given = [w.strip() for w in _WORKDIRS.value if w.strip()]
  if len(given) != 2:
    got = "none" if not given else f"{len(given)}: {', '.join(given)}"
    raise ConfigError(f"--workdirs takes exactly two sweep folders, --workdirs=A,B; got "
                      f"{got}")
  return given[0], given[1]


def _check_out(out: str) -> None:
  path = os.path.abspath(out)
  while not os.path.isdir(path):
    if os.path.lexists(path):
      raise ConfigError(f"--out '{out}' is a file or lies under one; give a folder")
    path = os.path.dirname(path)
  if not os.access(path, os.W_OK | os.X_OK):
    raise ConfigError(f"--out '{out}' cannot be written: no write permission on '{path}'")


def _main() -> int:
  from gradlab import compare, results
  from gradlab.report.compare import compare_markdown

  workdir_a, workdir_b = _workdirs()
  sweep_a, sweep_b = compare.load_sweep(workdir_a), compare.load_sweep(workdir_b)
  comparison = compare.compare_sweeps(sweep_a, sweep_b)
  out = _OUT.value or default_out(workdir_a, workdir_b)
  _check_out(out)

  from gradlab.viz.compare import compare_map

  png = compare_map(comparison, sweep_a.name, sweep_b.name, os.path.join(out, "compare.png"))
  print(f"wrote {png}")
  md = os.path.join(out, "compare.md")
  results.write_text(md, compare_markdown(comparison, workdir_a, workdir_b))
  print(f"wrote {md}")
  c = comparison.counts
  one_sweep = f"; {c.only_a} cells in A only, {c.only_b} in B only" if c.only_a + c.only_b else ""
  print(f"{sweep_b.name} vs {sweep_a.name}: {c.changed} of {c.cells} cells changed regime, "
        f"{c.better} better, {c.worse} worse ({c.to_unstable} {compare.TO_UNSTABLE}, "
        f"{c.to_stable} {compare.TO_STABLE}){one_sweep}")
  return 0


def parse_flags(argv: list[str]) -> list[str]:
  """absl flags_parser: an unknown or malformed flag is one line on stderr, status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
  sys.exit(2)


main = cli.make_main(_main, interrupted="the two sweeps are untouched; rerun the "
                     "same command to compare them")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
