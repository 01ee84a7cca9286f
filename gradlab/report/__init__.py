"""Everything that writes markdown (pandas only, no matplotlib): report.md and its sections.

Modules: `report_md` (`write_report`: WORKDIR/report.md), `markdown` (`markdown_table`),
`optimizers` (the optimizer and largest-stable-learning-rate tables), `sensitivity`
(LR sensitivity, Wortsman et al. 2023), `prediction` (predicted vs observed regime).
"""

from gradlab.report.markdown import markdown_table
from gradlab.report.report_md import write_report

__all__ = ["markdown_table", "write_report"]
