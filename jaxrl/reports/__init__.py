"""Reports over backtests and the registry: learning quality, plots, the scoreboard and notifications.

Only the standard library and numpy at import; matplotlib loads with `jaxrl.reports.plots`.
"""

from jaxrl.reports.notify import candidate_message, post_webhook
from jaxrl.reports.quality import LABELS, QualityThresholds, classify, write_quality_reports
from jaxrl.reports.scoreboard import scoreboard_rows, write_scoreboard

__all__ = [
    "LABELS",
    "QualityThresholds",
    "candidate_message",
    "classify",
    "post_webhook",
    "scoreboard_rows",
    "write_quality_reports",
    "write_scoreboard",
]
