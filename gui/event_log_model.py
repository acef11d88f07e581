"""The event log's model: LogEntry rows, oldest first, capped; and the filter by kind/text."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QFont

from .formatting import expand_vars, fmt_bytes, fmt_clock, fmt_duration
from .palette import ERROR_COLOR, WARNING_COLOR
from .records import LogEntry

Index = QModelIndex | QPersistentModelIndex
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1


class LogColumn(IntEnum):
    TIME = 0
    KIND = 1
    TASK = 2
    MODEL = 3
    BYTES = 4
    DURATION = 5
    REASON = 6


_COLUMNS = list(LogColumn)  # index → LogColumn without Enum.__call__ (data() is hot)
_ROLES = frozenset(
    {
        Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.BackgroundRole,
        Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.FontRole,
        Qt.ItemDataRole.TextAlignmentRole, ENTRY_ROLE,
    }
)  # fmt: skip
HEADERS = ("Time", "Event", "Task", "Model", "Bytes", "Duration", "Reason")
#: Short names for the Event column and the filter; exports keep the event's class name.
KIND_LABELS = {
    "ModelLoading": "Loading",
    "LoadProgress": "Progress",
    "ModelLoaded": "Loaded",
    "LoadFailed": "Load failed",
    "ModelEvicted": "Evicted",
    "ModelUnloaded": "Unloaded",
    "MemoryNotReturned": "Not returned",
    "ModelCrashed": "Crashed",
    "ServerOutput": "Output",
    "SelectionChanged": "Selected",
    "PinChanged": "Pin",
    "ConfigReloaded": "Config",
    "ModelParked": "Parked",
    "ModelRestored": "Restored",
    "ModelSlept": "Asleep",
    "ModelWoken": "Woken",
    "LoadCancelled": "Cancelled",
    "ModelWarmedUp": "Warmed up",
    "RequestStarted": "Request",
    "RequestFinished": "Answered",
    "Thrashing": "Thrashing",
    "Error": "Error",
}
#: The endpoint's events (the log's "Requests only" / "All but requests" filters).
REQUEST_KINDS = frozenset({"RequestStarted", "RequestFinished"})


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


EVICTION_BACKGROUND = QColor("#fdecea")


class EventLogModel(QAbstractTableModel):
    """At most `max_rows` entries; the oldest go first when it is full."""

    def __init__(self, parent: Any = None, max_rows: int = 20_000) -> None:
        super().__init__(parent)
        self.max_rows = max_rows
        self._entries: list[LogEntry] = []

    def append(self, entry: LogEntry) -> None:
        self.extend([entry])

    def extend(self, entries: list[LogEntry]) -> None:
        """Append `entries` in one insertion (one repaint), dropping the oldest beyond max_rows."""
        if not entries:
            return
        entries = entries[-self.max_rows :]
        overflow = len(self._entries) + len(entries) - self.max_rows
        if overflow > 0:
            # In chunks of a tenth: removing a few rows at every insertion would be slow.
            drop = min(len(self._entries), max(overflow, self.max_rows // 10))
            self.beginRemoveRows(QModelIndex(), 0, drop - 1)
            del self._entries[:drop]
            self.endRemoveRows()
        n = len(self._entries)
        self.beginInsertRows(QModelIndex(), n, n + len(entries) - 1)
        self._entries.extend(entries)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._entries.clear()
        self.endResetModel()

    def entries(self) -> list[LogEntry]:
        return list(self._entries)

    def kinds(self) -> list[str]:
        return sorted({e.kind for e in self._entries})

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(LogColumn)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section] if 0 <= section < len(HEADERS) else None
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role not in _ROLES or not index.isValid() or index.row() >= len(self._entries):
            return None
        entry = self._entries[index.row()]
        column = _COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _text(entry, column)
        if role == ENTRY_ROLE:
            return entry
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == LogColumn.MODEL:
                return expand_vars(entry.model_id) or None
            if column == LogColumn.KIND:
                return entry.kind
            return entry.reason or None
        if role == Qt.ItemDataRole.BackgroundRole and entry.severity == "eviction":
            return EVICTION_BACKGROUND
        if role == Qt.ItemDataRole.ForegroundRole:
            return _foreground(entry)
        if role == Qt.ItemDataRole.FontRole and entry.severity in ("eviction", "error"):
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (
            LogColumn.BYTES,
            LogColumn.DURATION,
        ):
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None


def _text(entry: LogEntry, column: LogColumn) -> str:
    match column:
        case LogColumn.TIME:
            # To the second: the milliseconds took the width that Task and Model needed at
            # 1366 px ("text_g…ration"); the rows keep their order, and exports every digit.
            return fmt_clock(entry.at)[:8]
        case LogColumn.KIND:
            return kind_label(entry.kind)
        case LogColumn.TASK:
            return entry.task
        case LogColumn.MODEL:
            return entry.model
        case LogColumn.BYTES:
            return fmt_bytes(entry.bytes) if entry.bytes else ""
        case LogColumn.DURATION:
            return fmt_duration(entry.duration_s) if entry.duration_s is not None else ""
        case LogColumn.REASON:
            return entry.reason


def _foreground(entry: LogEntry) -> QColor | None:
    if entry.severity in ("error", "eviction"):
        return QColor(ERROR_COLOR)
    if entry.severity == "warning":
        return QColor(WARNING_COLOR)
    return None


class EventLogFilter(QSortFilterProxyModel):
    """Shows one kind of event (or all) whose text contains the search text."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.kind: str | None = None
        self.text = ""
        self.hide_progress = False
        #: Kinds shown (None: any) and kinds hidden, for the filters over groups of kinds.
        self.only: frozenset[str] | None = None
        self.hidden: frozenset[str] = frozenset()

    def set_groups(self, only: frozenset[str] | None, hidden: frozenset[str]) -> None:
        self._begin_change()
        self.only, self.hidden = only, hidden
        self._end_change()

    def set_kind(self, kind: str | None) -> None:
        self._begin_change()
        self.kind = kind
        self._end_change()

    def set_hide_progress(self, hide: bool) -> None:
        self._begin_change()
        self.hide_progress = hide
        self._end_change()

    def set_text(self, text: str) -> None:
        self._begin_change()
        self.text = text.strip().lower()
        self._end_change()

    # Qt 6.9 replaced invalidateFilter() (now deprecated) with a begin/end pair.
    def _begin_change(self) -> None:
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()

    def _end_change(self) -> None:
        if hasattr(self, "endFilterChange"):
            self.endFilterChange()
        else:
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        entry = model.index(source_row, 0, source_parent).data(ENTRY_ROLE)
        if not isinstance(entry, LogEntry):
            return False
        if self.kind and entry.kind != self.kind:
            return False
        if self.hide_progress and entry.kind == "LoadProgress":
            return False
        if entry.kind in self.hidden or (self.only is not None and entry.kind not in self.only):
            return False
        if self.text:
            words = (entry.kind, kind_label(entry.kind), entry.task, entry.model, entry.model_id,
                     entry.reason)  # fmt: skip
            haystack = " ".join(words).lower()
            return self.text in haystack
        return True

    def visible_entries(self) -> list[LogEntry]:
        rows = (self.index(i, 0).data(ENTRY_ROLE) for i in range(self.rowCount()))
        return [e for e in rows if isinstance(e, LogEntry)]


__all__ = [
    "ENTRY_ROLE",
    "HEADERS",
    "KIND_LABELS",
    "REQUEST_KINDS",
    "EventLogFilter",
    "EventLogModel",
    "LogColumn",
    "kind_label",
]
