"""index.html, the interactive explorer of a sweep (plotly.js, offline).

`write_index(workdir)` writes WORKDIR/index.html: the regime map per panel (colours,
axes and theory lines as on regime_map.png), hover for a cell's numbers, a click for
its runs' curves, a selector for the coloured quantity, and report.md below. Modules:
`payload` (the data as JSON), `trajectories` (per-chunk curve scripts loaded on click),
`report_html` (report.md as HTML), `page` (the page itself).
"""

from gradlab.viz.explorer.page import write_index

__all__ = ["write_index"]
