"""Paper reproductions: one module per paper, registered by ID in `PAPERS`
(`experiments.reproduce.base`); `python -m experiments.reproduce --list` names them.

Importing this package imports every module of it that is not part of the machinery
(`MACHINERY`) and whose name does not start with '_' (shared helpers of several
papers), and each such module registers its paper: adding a paper is adding its
file (docs/reproductions.md, "Adding a paper")."""

import importlib
import pkgutil

from experiments.reproduce.base import PAPERS, Context, Outcome, Paper, register

MACHINERY = frozenset({"base", "claims", "docs", "figures", "record", "runner", "__main__"})

for _info in pkgutil.iter_modules(__path__):
  if _info.name not in MACHINERY and not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["PAPERS", "Context", "Outcome", "Paper", "register"]
