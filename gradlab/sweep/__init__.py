"""Grid expansion (`grid`), the executor of chunks (`executor`), the sweep modes (`dense`,
`boundary`) and their door (`engine.run_sweep`)."""

from gradlab.sweep.engine import MODES, run_sweep
from gradlab.sweep.executor import SweepStats
from gradlab.sweep.grid import make_plan

__all__ = ["MODES", "SweepStats", "make_plan", "run_sweep"]
