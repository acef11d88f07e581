"""The budget bars' colours in words, under the bars: each task's colour by name, the mark at
the budget, and the red that shows what does not fit."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from .formatting import fmt_bytes
from .palette import ERROR_COLOR, MUTED_COLOR, task_color
from .records import BudgetReport, HostTierInfo


def legend_html(report: BudgetReport, task_order: list[str]) -> str:
    """The legend for the plans of `report` (tasks in config order)."""
    planned = {t for plan in report.plans for t in plan.tasks}
    tasks = [t for t in task_order if t in planned] + sorted(planned.difference(task_order))
    swatch = "<span style='color:{c}; font-size:14px'>■</span>&nbsp;{t}"
    parts = [swatch.format(c=task_color(t, task_order), t=t) for t in tasks]
    parts.append(f"<span style='color:{MUTED_COLOR}'><b>│</b></span>&nbsp;budget")
    if not report.valid:
        parts.append(f"<span style='color:{ERROR_COLOR}'>▨</span>&nbsp;over&nbsp;the&nbsp;budget")
    return " &nbsp;&nbsp;".join(parts)


class BudgetLegend(QLabel):
    """One wrapped line of legend entries; empty until a plan arrives."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("budgetLegend")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.task_order: list[str] = []
        self._tier = ""
        self._report: BudgetReport | None = None

    def show_report(self, report: BudgetReport) -> None:
        self._report = report
        self.setText(legend_html(report, self.task_order) + self._tier)

    def show_host_tier(self, tier: HostTierInfo | None) -> None:
        """The host-RAM tier under the bars: its use of its budget, or why it is off (the one
        place that says so)."""
        self._tier = "" if tier is None else f"<br>{host_tier_html(tier)}"
        if self._report is not None:
            self.show_report(self._report)


def host_tier_html(tier: HostTierInfo) -> str:
    """The tier's use of its budget, or why it is off: said here only, beside the budgets
    (the chart shows the tier only while it is on)."""
    if not tier.enabled:
        reason = tier.reason.removeprefix("off: ")  # the manager's reasons may start so
        said = f"host-RAM tier off: {reason}" if reason else "host-RAM tier off"
        return f"<span style='color:{MUTED_COLOR}'>{said}</span>"
    return (
        f"host-RAM tier: {fmt_bytes(tier.used)} of {fmt_bytes(tier.budget)} "
        "(parked models come back in a fraction of a load)"
    )


__all__ = ["BudgetLegend", "host_tier_html", "legend_html"]
