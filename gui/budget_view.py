"""The budget view: the selected models of all tasks against each device's budget.

One bar per device, as the planner (manager/planning.py, the one ``vramdeck plan`` uses) places
them: a segment per task in the chart's colours, a mark at the budget (what other processes hold
already taken off), and red beyond it where the models do not fit together. Below, the tasks
served by an API (no local memory) and the ones whose selected option cannot load here (not
counted), each with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPoint, QRectF, Qt
from PySide6.QtGui import QColor, QHelpEvent, QPainter, QPen
from PySide6.QtWidgets import QLabel, QSizePolicy, QToolTip, QVBoxLayout, QWidget

from .formatting import fmt_bytes, fmt_percent
from .palette import ERROR_COLOR, MUTED_COLOR, OK_COLOR, TEXT_COLOR, task_color
from .records import BudgetReport, DevicePlan

BAR_HEIGHT = 18
ROW_HEIGHT = 46


@dataclass(frozen=True)
class _Segment:
    rect: QRectF
    tip: str


class BudgetBars(QWidget):
    """Paints one bar per device plan."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plans: tuple[DevicePlan, ...] = ()
        self.task_order: list[str] = []
        self._segments: list[_Segment] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)

    def set_plans(self, plans: tuple[DevicePlan, ...]) -> None:
        self.plans = plans
        self.setMinimumHeight(ROW_HEIGHT * max(1, len(plans)) + 4)
        self.update()

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        self._segments = []
        for i, plan in enumerate(self.plans):
            self._paint_plan(painter, plan, i * ROW_HEIGHT)
        painter.end()

    def _paint_plan(self, painter: QPainter, plan: DevicePlan, top: int) -> None:
        width = self.width() - 12
        scale = width / max(plan.required, plan.budget, 1) / 1.08
        colour = QColor(OK_COLOR if plan.fits else ERROR_COLOR)
        painter.setPen(QColor(TEXT_COLOR))
        name = f"{plan.device} · {plan.name}"
        verdict = "fits" if plan.fits else f"over by {fmt_bytes(plan.required - plan.budget)}"
        others = f", {fmt_bytes(plan.others)} taken by other processes" if plan.others else ""
        text = (
            f"{name}: {fmt_bytes(plan.required)} of {fmt_bytes(plan.budget)} budget "
            f"({fmt_percent(plan.required, plan.budget)}{others}) — "
        )
        painter.drawText(6, top + 14, text)
        painter.setPen(colour)
        painter.drawText(6 + painter.fontMetrics().horizontalAdvance(text), top + 14, verdict)
        bar_top = top + 20
        painter.fillRect(QRectF(6, bar_top, width, BAR_HEIGHT), QColor("#eef0f2"))
        x = 6.0
        for task, nbytes in sorted(plan.tasks.items(), key=lambda kv: self._order(kv[0])):
            rect = QRectF(x, bar_top, nbytes * scale, BAR_HEIGHT)
            painter.fillRect(rect, QColor(task_color(task, self.task_order)))
            tip = f"{task}: {fmt_bytes(nbytes)} on {plan.device}"
            self._segments.append(_Segment(rect, tip))
            x += rect.width()
        budget_x = 6 + plan.budget * scale
        if not plan.fits:  # the part that does not fit, hatched red
            over = QRectF(budget_x, bar_top, x - budget_x, BAR_HEIGHT)
            painter.fillRect(over, QColor(198, 40, 40, 90))
            painter.fillRect(over, Qt.BrushStyle.BDiagPattern)
        painter.setPen(QPen(QColor(ERROR_COLOR if not plan.fits else MUTED_COLOR), 2))
        painter.drawLine(int(budget_x), bar_top - 3, int(budget_x), bar_top + BAR_HEIGHT + 3)

    def _order(self, task: str) -> int:
        return self.task_order.index(task) if task in self.task_order else len(self.task_order)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            tip = self.tip_at(event.pos())
            if tip:
                QToolTip.showText(event.globalPos(), tip, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    def tip_at(self, pos: QPoint) -> str | None:
        return next((s.tip for s in self._segments if s.rect.contains(pos.toPointF())), None)


class BudgetView(QWidget):
    """A verdict line and the device bars; `show_report` takes what the bridge planned."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("budgetView")
        self.report: BudgetReport | None = None
        self.verdict = QLabel("Budget: not planned yet", self)
        self.verdict.setObjectName("budgetVerdict")
        self.bars = BudgetBars(self)
        self.note = QLabel(self)
        self.note.setObjectName("budgetNote")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(2)
        layout.addWidget(self.verdict)
        layout.addWidget(self.bars)
        layout.addWidget(self.note)
        layout.addStretch(1)

    def set_task_order(self, tasks: list[str]) -> None:
        self.bars.task_order = list(tasks)
        self.bars.update()

    def show_report(self, report: BudgetReport) -> None:
        self.report = report
        plans = tuple(p for p in report.plans if p.tasks or p.device.startswith("cuda"))
        self.bars.set_plans(plans or report.plans)
        bad = [p.device for p in report.plans if not p.fits]
        if report.valid:
            self.verdict.setText("Budget: the selected models fit together")
            self.verdict.setStyleSheet(f"color: {OK_COLOR}; font-weight: 600")
        else:
            where = ", ".join(bad)
            self.verdict.setText(f"Budget: the selected models do not fit together on {where}")
            self.verdict.setStyleSheet(f"color: {ERROR_COLOR}; font-weight: 600")
        lines = []
        if report.external_tasks:
            lines.append(f"External APIs (no local memory): {', '.join(report.external_tasks)}")
        skipped = report.skipped.items()
        lines += [f"Not counted, cannot load here: {task} ({why})" for task, why in skipped]
        self.note.setText("\n".join(lines))
        self.note.setVisible(bool(lines))


__all__ = ["BudgetBars", "BudgetView"]
