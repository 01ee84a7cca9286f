"""Redraws a sweep's figures and report from its saved results.

    python -m experiments.plot --workdir=runs/<time>-default
    python -m experiments.plot --workdir=runs/dense --boundary=runs/edge   # boundary.png
                                                                           # over the dense map
"""

from __future__ import annotations

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A sweep folder.", required=True)
_BOUNDARY = flags.DEFINE_string(
  "boundary", "", "A boundary-search folder: draw its boundary.png (into that folder) over "
  "the regime map of the dense sweep --workdir.")


def _main() -> int:
  from gradlab import results
  from gradlab.viz import draw_all
  from gradlab.viz.boundary import draw_boundary

  if _BOUNDARY.value:
    print(f"wrote {draw_boundary(_BOUNDARY.value, dense_dir=_WORKDIR.value)}")
    return 0
  meta = results.read_config(_WORKDIR.value)
  if meta.get("mode") == "boundary":
    dense = meta.get("config", {}).get("sweep", {}).get("dense_workdir", "")
    print(f"wrote {draw_boundary(_WORKDIR.value, dense_dir=dense)}")
    return 0
  for path in draw_all(_WORKDIR.value).values():
    print(f"wrote {path}")
  return 0


main = cli.make_main(_main, interrupted="the sweep's results are untouched; rerun the "
                     "same command to draw its figures")


if __name__ == "__main__":
  app.run(main)
