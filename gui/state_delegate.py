"""The task table's state column: a progress bar while loading, else the state in its colour."""

from __future__ import annotations

import time

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from .records import TaskRow
from .task_table import ROW_ROLE, STATE_COLORS, state_text

Index = QModelIndex | QPersistentModelIndex


class StateDelegate(QStyledItemDelegate):
    """Paints the state: a dot and the word, or a progress bar with the load's stage."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        row = index.data(ROW_ROLE)
        if not isinstance(row, TaskRow):
            super().paint(painter, option, index)
            return
        rect: QRect = option.rect
        if row.loading:
            self._paint_progress(painter, rect, row)
            return
        super().paint(painter, option, index)

    def initStyleOption(self, option: QStyleOptionViewItem, index: Index) -> None:
        super().initStyleOption(option, index)
        row = index.data(ROW_ROLE)
        if isinstance(row, TaskRow) and row.state in ("loaded", "failed", "external"):
            option.font.setBold(True)

    @staticmethod
    def _paint_progress(painter: QPainter, rect: QRect, row: TaskRow) -> None:
        bar = QStyleOptionProgressBar()
        bar.rect = rect.adjusted(3, 5, -3, -5)
        bar.minimum, bar.maximum = 0, 100
        bar.progress = int(100 * (row.progress or 0.0))
        bar.text = state_text(row)
        bar.textVisible = True
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        bar.palette.setColor(bar.palette.ColorRole.Highlight, QColor(STATE_COLORS["loading"]))
        QApplication.style().drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)
        if row.progress is None:  # no fraction known: a chunk sweeps (the view repaints it)
            _paint_sweep(painter, bar.rect, time.monotonic())


#: One sweep of the indeterminate bar's chunk, and its share of the bar's width.
SWEEP_S, SWEEP_SHARE = 1.6, 0.25


def sweep_span(width: int, now: float) -> tuple[int, int]:
    """Where the chunk of an indeterminate bar `width` wide is at `now`: (left, chunk width)."""
    chunk = max(int(width * SWEEP_SHARE), 8)
    phase = (now % SWEEP_S) / SWEEP_S
    return int(phase * (width + chunk)) - chunk, chunk


def _paint_sweep(painter: QPainter, rect: QRect, now: float) -> None:
    left, chunk = sweep_span(rect.width(), now)
    color = QColor(STATE_COLORS["loading"])
    color.setAlpha(90)
    span = QRect(
        rect.left() + max(left, 0), rect.top() + 1, chunk + min(left, 0), rect.height() - 2
    )
    painter.fillRect(span.intersected(rect), color)


__all__ = ["StateDelegate", "sweep_span"]
