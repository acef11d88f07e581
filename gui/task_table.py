"""The task table's model: one row per task, read from `TaskRow` values the bridge makes.

Choosing an option or toggling a pin does not change the row here: it asks (optionChosen,
pinToggled), and the row changes when the manager says it did, so the table never shows a
selection the manager does not have.
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont

from .formatting import fmt_ago, fmt_bytes, fmt_duration, plain_reason, short_model_id
from .records import TaskRow

Index = QModelIndex | QPersistentModelIndex

#: The TaskRow of an index (any column).
ROW_ROLE = Qt.ItemDataRole.UserRole + 1


class Column(IntEnum):
    TASK = 0
    MODEL = 1
    FRAMEWORK = 2
    ESTIMATED = 3
    MEASURED = 4
    DEVICE = 5
    STATE = 6
    RESIDENCY = 7
    LAST_USED = 8
    LOAD_TIME = 9
    REQUESTS = 10
    PINNED = 11
    ACTIONS = 12


_COLUMNS = list(Column)  # index → Column without Enum.__call__ (data() is called a lot)
HEADERS = {
    Column.TASK: "Task",
    Column.MODEL: "Model",
    Column.FRAMEWORK: "Framework",
    Column.ESTIMATED: "Estimated",
    Column.MEASURED: "Measured",
    Column.DEVICE: "Device",
    Column.STATE: "State",
    Column.RESIDENCY: "Where",
    Column.LAST_USED: "Last used",
    Column.LOAD_TIME: "Load time",
    Column.REQUESTS: "Requests",
    Column.PINNED: "Pin",
    Column.ACTIONS: "",
}
HEADER_TIPS = {
    Column.ESTIMATED: "The config's vram_gb for the selected model",
    Column.MEASURED: "What the model took when it last loaded (grey: from an earlier load)",
    Column.PINNED: "Pinned models are never evicted (they can still be unloaded)",
    Column.LOAD_TIME: "How long the last load took (+ the warm-up's first inference)",
    Column.RESIDENCY: "On its device, parked in host RAM, asleep (a server that gave its memory "
    "back) or off; and the expected time to bring it back",
    Column.REQUESTS: "Requests through the OpenAI endpoint and Try-it: in flight / waiting for "
    "the model / served, and the last one's latency",
}
STATE_COLORS = {
    "loaded": "#2e7d32",
    "in use": "#1565c0",
    "loading": "#1565c0",
    "failed": "#c62828",
    "external": "#6a1b9a",
    "unavailable": "#8a8f98",
    "unloaded": "#5f6368",
}
_NUMERIC = (Column.ESTIMATED, Column.MEASURED, Column.LOAD_TIME, Column.REQUESTS)


class TaskTableModel(QAbstractTableModel):
    """Rows of tasks; `set_rows` replaces them, `update_row` refreshes one."""

    #: The person chose option (str) for task (str) in the row's combo box.
    optionChosen = Signal(str, str)
    #: The person pinned (True) or unpinned the task.
    pinToggled = Signal(str, bool)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[TaskRow] = []

    # ----------------------------------------------------------------- updates

    def set_rows(self, rows: list[TaskRow]) -> None:
        """Replace every row (a config was loaded)."""
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def update_row(self, row: TaskRow) -> None:
        """Refresh the row of `row.task`; unknown tasks are ignored."""
        for i, old in enumerate(self._rows):
            if old.task == row.task:
                if old != row:
                    self._rows[i] = row
                    last = self.columnCount() - 1
                    self.dataChanged.emit(self.index(i, 0), self.index(i, last))
                return

    def rows(self) -> list[TaskRow]:
        return list(self._rows)

    def row_of(self, task: str) -> int:
        """The row number of `task`, or -1."""
        return next((i for i, r in enumerate(self._rows) if r.task == task), -1)

    # ----------------------------------------------------------------- the Qt model

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or section not in Column._value2member_map_:
            return None
        column = Column(section)
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[column]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS.get(column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _NUMERIC:
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == Column.MODEL:
            return base | Qt.ItemFlag.ItemIsEditable
        if index.column() == Column.PINNED:
            return base | Qt.ItemFlag.ItemIsUserCheckable
        return base

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        row, column = self._rows[index.row()], _COLUMNS[index.column()]
        if role == ROW_ROLE:
            return row
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return self._text(row, column, role)
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(row, column)
        if role == Qt.ItemDataRole.CheckStateRole and column == Column.PINNED:
            return Qt.CheckState.Checked if row.pinned else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.ForegroundRole:
            return _foreground(row, column)
        if role == Qt.ItemDataRole.FontRole and column == Column.TASK:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _NUMERIC:
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def setData(self, index: Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or index.row() >= len(self._rows):
            return False
        row = self._rows[index.row()]
        if index.column() == Column.MODEL and role == Qt.ItemDataRole.EditRole:
            if isinstance(value, str) and value != row.selected:
                self.optionChosen.emit(row.task, value)
            return False  # the row changes when the manager reports SelectionChanged
        if index.column() == Column.PINNED and role == Qt.ItemDataRole.CheckStateRole:
            checked = value in (Qt.CheckState.Checked, Qt.CheckState.Checked.value, 2, True)
            self.pinToggled.emit(row.task, checked)
            return False
        return False

    @staticmethod
    def _text(row: TaskRow, column: Column, role: int) -> str | None:
        option = row.option
        match column:
            case Column.TASK:
                return row.task
            case Column.MODEL:
                return row.selected if role == Qt.ItemDataRole.EditRole else option.label
            case Column.FRAMEWORK:
                return option.framework
            case Column.ESTIMATED:
                return "API" if option.external else fmt_bytes(row.estimated_bytes)
            case Column.MEASURED:
                return "—" if option.external else fmt_bytes(row.measured_bytes)
            case Column.DEVICE:
                return row.device
            case Column.STATE:
                return state_text(row)
            case Column.LAST_USED:
                return fmt_ago(row.last_used_at, time.time())
            case Column.RESIDENCY:
                return residency_text(row)
            case Column.LOAD_TIME:
                first = row.first_inference_s
                load = fmt_duration(row.load_duration_s)
                # An inference remembered without a load of this run would read "— + 109 ms".
                if first is None or row.load_duration_s is None:
                    return load
                return f"{load} + {fmt_duration(first)}"
            case Column.REQUESTS:
                return requests_text(row)
        return None


def residency_text(row: TaskRow) -> str:
    """``on device``, ``in RAM · 0.4 s``, ``sleeping · 2.1 s`` (the time to bring it back),
    ``off``, or ``API`` for an option that holds no memory here."""
    where = row.residency
    if where in ("in RAM", "sleeping") and row.restore_s is not None:
        return f"{where} · {fmt_duration(row.restore_s)}"  # the tooltip: "to bring it back"
    return where


def requests_text(row: TaskRow) -> str:
    """``in flight/queued/served · last latency`` (``—`` before the first request)."""
    r = row.requests
    if not (r.in_flight or r.queued or r.served):
        return "—"
    latency = f" · {fmt_duration(r.last_latency_s)}" if r.last_latency_s is not None else ""
    return f"{r.in_flight}/{r.queued}/{r.served}{latency}"


def state_text(row: TaskRow) -> str:
    """``loading 40% · reading weights``, ``loaded``, and with the reason in the row:
    ``failed: out of memory``, ``cannot load here: needs the vllm package`` …"""
    if row.state == "loading":
        share = f" {row.progress:.0%}" if row.progress is not None else ""
        stage = f" · {row.stage}" if row.stage else ""
        return f"loading{share}{stage}"
    if row.state == "unavailable":
        return f"cannot load here: {row.failure}" if row.failure else "cannot load here"
    if row.state == "failed" and row.failure:
        return f"failed: {plain_reason(row.failure, row.task)}"
    return row.state


def _tooltip(row: TaskRow, column: Column) -> str | None:
    option = row.option
    if column == Column.TASK:
        return row.description or None
    if column == Column.MODEL:
        parts = [option.model_id, option.description]
        if option.quantization:
            parts.append(f"quantization: {option.quantization}")
        return "\n".join(p for p in parts if p)
    if column == Column.STATE and row.failure:
        # In full (the cell elides a long reason), a failure with its exception's name.
        return f"failed: {row.failure}" if row.state == "failed" else state_text(row)
    if column == Column.MEASURED and row.measured_bytes is not None and not row.measured_is_live:
        return "Measured at an earlier load; the next load plans with this figure"
    if column == Column.DEVICE and row.server_url:
        return f"Its server: {row.server_url} (right-click: Copy server URL)"
    if column == Column.DEVICE and option.device != "auto":
        return f"Fixed in the config: device {option.device}"
    if column == Column.RESIDENCY and row.restore_s is not None:
        return f"Expected {fmt_duration(row.restore_s)} to bring it back, as measured"
    if column == Column.LOAD_TIME and row.first_inference_s is not None:
        if row.load_duration_s is None:
            return f"The first inference took {fmt_duration(row.first_inference_s)} last time"
        return (
            f"Loaded in {fmt_duration(row.load_duration_s)}; the first inference took "
            f"{fmt_duration(row.first_inference_s)}"
        )
    if column == Column.ACTIONS:
        return short_model_id(option.model_id)
    return None


def _foreground(row: TaskRow, column: Column) -> QColor | None:
    if column == Column.STATE:
        return QColor(STATE_COLORS.get(row.state, "#202124"))
    if column == Column.MEASURED and not row.measured_is_live:
        return QColor("#8a8f98")
    return None


__all__ = [
    "HEADERS", "ROW_ROLE", "STATE_COLORS", "Column", "TaskTableModel", "requests_text",
    "residency_text", "state_text",
]  # fmt: skip
