"""Redraws a sweep's figures and report from its saved results.

    python -m experiments.plot --workdir=runs/<time>-default
"""

from __future__ import annotations

import sys

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A sweep folder.", required=True)


def _main() -> int:
  from gradlab.figures import draw_all

  for path in draw_all(_WORKDIR.value).values():
    print(f"wrote {path}")
  return 0


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  sys.exit(cli.run_cleanly(_main))


if __name__ == "__main__":
  app.run(main)
