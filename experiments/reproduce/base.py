"""What a paper reproduction is: a registered `Paper` whose `run` trains through gradlab's
own sweep and train machinery (a `Context` lends it) and returns an `Outcome` (its
judged claims and the data of its figure), and whose `draw` makes the figure.

    PAPER = register(Paper(id="cohen2021", title=..., citation=..., summary=...,
                           run=run, draw=draw))

Three scales, chosen by the command line and read by the paper through `Context.pick`:
the paper-scale variant (an accelerator; catalog datasets where the paper used them),
``quick`` (the CPU variant: at most 10 minutes on 2 cores, smaller models, its own
tolerances) and ``smoke`` (seconds; only checks that the path runs and writes a valid
reproduction.json: its verdicts mean nothing and say so).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import ml_collections as mlc
import pandas as pd

from experiments.reproduce.claims import Claim
from gradlab.registry import Registry

T = TypeVar("T")
log = logging.getLogger("gradlab")


@dataclasses.dataclass(frozen=True)
class Outcome:
  """A paper's judged claims and what its figure draws (`figure`: plain numbers and
  lists, kept in reproduction.json under "figure_data")."""
  claims: list[Claim]
  figure: dict[str, Any]


@dataclasses.dataclass
class Context:
  """What a paper's `run` gets: its folder, its scale, and gradlab's machinery."""
  workdir: str
  quick: bool = False
  smoke: bool = False
  progress: bool = False

  @property
  def scale(self) -> str:
    return "smoke" if self.smoke else "quick" if self.quick else "paper"

  def pick(self, paper: T, quick: T, smoke: T | None = None) -> T:
    """The value for this scale: `paper` (accelerator), `quick` (CPU) or `smoke` (the
    seconds-long check; defaults to `quick`)."""
    if self.smoke:
      return quick if smoke is None else smoke
    return quick if self.quick else paper

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  def sweep(self, cfg: mlc.ConfigDict, name: str) -> pd.DataFrame:
    """Runs the sweep of `cfg` (gradlab.sweep.run_sweep) into WORKDIR/`name` and returns
    its result rows (gradlab.results.load). Rerunning into the same folder resumes."""
    from gradlab import results
    from gradlab.sweep import make_plan, run_sweep

    folder = self.path(name)
    if self.smoke and cfg.diagnostics.initial == "auto":
      # seconds, not a result: no step-0 sharpness the paper did not ask for (its power
      # iteration is half the compile of a small recurrent or transformer program)
      cfg = cfg.copy_and_resolve_references()
      cfg.diagnostics.initial = "off"
    plan = make_plan(cfg)
    log.info(f"  sweep '{name}': {plan.n_points} runs in {len(plan.groups)} groups -> {folder}")
    run_sweep(cfg, folder, progress=self.progress, plan=plan)
    return results.load(folder)

  def trajectory(self, name: str, run_id: int) -> dict[str, Any]:
    """The per-step arrays of run `run_id` of the sweep `name`."""
    from gradlab import results

    return results.load_trajectory(self.path(name), int(run_id))

  def train(self, cfg: mlc.ConfigDict) -> Any:
    """One run of `cfg`'s own point (gradlab.train.train_one): its Trajectory."""
    from gradlab.data import load_dataset
    from gradlab.train import train_one

    dataset = load_dataset(cfg.data.name, cfg.data.data_dir or None, data_cfg=cfg.data)
    return train_one(cfg, dataset)


@dataclasses.dataclass(frozen=True)
class Paper:
  id: str
  title: str
  citation: str
  summary: str  # one line, for --list
  run: Callable[[Context], Outcome]
  draw: Callable[[Outcome, str, Context], None]  # (outcome, png path, context)


PAPERS: Registry[Paper] = Registry("paper")


def register(paper: Paper) -> Paper:
  return PAPERS.register(paper.id)(paper)
