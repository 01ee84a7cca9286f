"""Grid expansion and the vmapped sweep engine."""

from gradlab.sweep.engine import SweepStats, run_sweep
from gradlab.sweep.grid import make_plan

__all__ = ["SweepStats", "make_plan", "run_sweep"]
