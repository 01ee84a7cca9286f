"""Everything that draws (matplotlib only; `canvas` picks the Agg backend, in one place).

One door: `draw_all(workdir)` draws every figure of a sweep folder and writes its
report.md (`gradlab.report`). Modules, by what they draw: `maps` (regime and final-loss
maps), `overlays` (the mean-field lines over them), `lr_summary` (largest stable
learning rate), `boundary` (a boundary search's boundary), `through_time` (RNN gradients
through time), `ln_depth` (Pre-LN vs Post-LN gradient against depth), `dashboard` (one
run's diagnostics), `coord_check` (activation size against width, per parameterization).
They read numbers (`gradlab.results`, `gradlab.panels`, `gradlab.diagnostics`,
`gradlab.coord_check`) and compute none; nothing below them imports them.
"""

from gradlab.viz.figures import draw_all

__all__ = ["draw_all"]
