"""The budget bars' colours in words, under the bars: each task's colour by name, the mark at
the budget, and the red that shows what does not fit."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from .palette import ERROR_COLOR, MUTED_COLOR, task_color
from .records import BudgetReport


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

    def show_report(self, report: BudgetReport) -> None:
        self.setText(legend_html(report, self.task_order))


__all__ = ["BudgetLegend", "legend_html"]
