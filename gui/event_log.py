"""The event log: every manager event with time, task, model, bytes, duration and reason.

Evictions stand out; a combo box filters by kind and a search box by text; Export writes what
is shown to CSV or JSON Lines.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontMetrics, QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .event_log_model import REQUEST_KINDS, EventLogFilter, EventLogModel, LogColumn, kind_label
from .log_export import write_csv, write_jsonl
from .records import LogEntry
from .table_style import style_read_only_table

ALL_KINDS = "All events"
REASON_LEAST, COLUMN_LEAST = 140, 64  # pixels (the whole reason is in the row's tooltip)
NO_PROGRESS = "All but progress"
#: The endpoint's requests only, or everything else (without progress).
REQUESTS_ONLY, NO_REQUESTS = "Requests only", "All but requests"
#: Kinds the filter offers before any has happened, in a sensible order.
KNOWN_KINDS = ("ModelLoading", "LoadProgress", "ModelLoaded", "LoadFailed", "ModelEvicted",
               "ModelUnloaded", "MemoryNotReturned", "ModelCrashed", "ServerOutput",
               "SelectionChanged", "PinChanged", "ConfigReloaded", "Error")  # fmt: skip


class EventLog(QWidget):
    """The log table with its filter and export controls."""

    def __init__(self, parent: QWidget | None = None, max_rows: int = 20_000) -> None:
        super().__init__(parent)
        self.setObjectName("eventLog")
        self.model = EventLogModel(self, max_rows=max_rows)
        self._pending: list[LogEntry] = []
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(100)
        self._flush_timer.timeout.connect(self.flush)
        self.proxy = EventLogFilter(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.set_hide_progress(True)  # NO_PROGRESS, the combo box's default
        self.table = self._make_table()
        self.kind_combo = self._make_kind_combo()
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search task, model, reason…")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(160)
        self.search.textChanged.connect(self.proxy.set_text)
        self.search.textChanged.connect(lambda _t: self._update_count())
        self.export_button = self._make_export_button()
        self.count = QLabel(self)
        self.count.setObjectName("logCount")
        self._lay_out()
        self._update_count()

    def _make_kind_combo(self) -> QComboBox:
        combo = QComboBox(self)
        combo.addItem(ALL_KINDS, ALL_KINDS)
        combo.addItem(NO_PROGRESS, NO_PROGRESS)
        combo.addItem(REQUESTS_ONLY, REQUESTS_ONLY)
        combo.addItem(NO_REQUESTS, NO_REQUESTS)
        for kind in KNOWN_KINDS:
            combo.addItem(kind_label(kind), kind)
        combo.setCurrentIndex(1)
        combo.setToolTip("Show one kind of event")
        combo.currentIndexChanged.connect(self._on_kind)
        return combo

    def _make_export_button(self) -> QToolButton:
        button = QToolButton(self)
        button.setText("Export")
        button.setToolTip("Save the events shown (the filter applies)")
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(button)
        menu.addAction("CSV…", lambda: self.export_dialog("csv"))
        menu.addAction("JSON Lines…", lambda: self.export_dialog("jsonl"))
        button.setMenu(menu)
        return button

    def _lay_out(self) -> None:
        title = QLabel("Events", self)
        title.setObjectName("sectionTitle")
        row = QHBoxLayout()
        row.addWidget(title)
        row.addWidget(self.count)
        row.addStretch(1)
        row.addWidget(self.kind_combo)
        row.addWidget(self.search)
        row.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)

    def _make_table(self) -> QTableView:
        table = QTableView(self)
        table.setObjectName("eventTable")
        table.setModel(self.proxy)
        style_read_only_table(table, row_height=22)
        # "room for e…" hid what mattered: cut in the middle; the tooltip has it all.
        table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = table.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        bold = table.font()
        bold.setBold(True)  # evictions and errors are bold: size for them
        metrics = QFontMetrics(bold)
        samples = {
            LogColumn.TIME: "00:00:00",
            LogColumn.KIND: "Load failed",
            LogColumn.TASK: "text_generation",
            LogColumn.MODEL: "gpt2-medium",
            LogColumn.BYTES: "00 MiB",
            LogColumn.DURATION: "Duration",
        }
        # The header's padding (6 px a side in the style sheet) and its border: a cell's margins
        # are less. More than that took Task's width at 1366 px.
        self._natural = {c: metrics.horizontalAdvance(t) + 14 for c, t in samples.items()}
        for column, width in self._natural.items():
            table.setColumnWidth(column, width)
        header.setSectionResizeMode(LogColumn.REASON, QHeaderView.ResizeMode.Stretch)
        return table

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._share_columns()

    def _share_columns(self) -> None:
        """In a narrow log, Task and Model give up width (elided in the middle) so that the
        Reason column keeps REASON_LEAST pixels at least: the reason is what a person reads."""
        room = self.table.viewport().width()
        bar = self.table.verticalScrollBar()
        if not bar.isVisible():  # it comes with the log's first screenful, and takes from Reason
            room -= bar.sizeHint().width()
        fixed = sum(self._natural[c] for c in (LogColumn.TIME, LogColumn.KIND, LogColumn.BYTES,
                                              LogColumn.DURATION))  # fmt: skip
        natural = self._natural[LogColumn.TASK] + self._natural[LogColumn.MODEL]
        spare = room - fixed - REASON_LEAST
        share = min(1.0, max(spare, 0) / natural)
        for column in (LogColumn.TASK, LogColumn.MODEL):
            self.table.setColumnWidth(column, max(COLUMN_LEAST, int(self._natural[column] * share)))

    def add_entry(self, entry: LogEntry) -> None:
        """Queue an entry; queued entries are shown together (`flush`), at most 10 times a
        second, since a load brings several events and each insertion repaints the table."""
        self._pending.append(entry)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def flush(self) -> None:
        """Show the queued entries; keep the view at the newest line if it was there."""
        self._flush_timer.stop()
        entries, self._pending = self._pending, []
        if not entries:
            return
        bar = self.table.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 2
        self.model.extend(entries)
        for kind in dict.fromkeys(e.kind for e in entries):
            if self.kind_combo.findData(kind) < 0:
                self.kind_combo.addItem(kind_label(kind), kind)
        if at_bottom:
            self.table.scrollToBottom()
        self._update_count()

    def show_kind(self, kind: str | None) -> None:
        """Filter to one kind of event (a class name such as "ModelEvicted"), or all (None)."""
        index = self.kind_combo.findData(kind or ALL_KINDS)
        if index < 0:
            self.kind_combo.addItem(kind_label(kind or ""), kind)
            index = self.kind_combo.count() - 1
        self.kind_combo.setCurrentIndex(index)

    def _on_kind(self, _index: int) -> None:
        choice = self.kind_combo.currentData()
        groups = (ALL_KINDS, NO_PROGRESS, REQUESTS_ONLY, NO_REQUESTS)
        self.proxy.set_kind(None if choice in groups else choice)
        self.proxy.set_hide_progress(choice in (NO_PROGRESS, NO_REQUESTS))
        only = REQUEST_KINDS if choice == REQUESTS_ONLY else None
        self.proxy.set_groups(only, REQUEST_KINDS if choice == NO_REQUESTS else frozenset())
        self._update_count()

    def _update_count(self) -> None:
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        self.count.setText(f"{total}" if shown == total else f"{shown} of {total}")

    def visible_entries(self) -> list[LogEntry]:
        """The entries the filter lets through, oldest first (queued ones included)."""
        self.flush()
        return self.proxy.visible_entries()

    def export(self, path: str | Path) -> int:
        """Write the shown entries to `path` (CSV for .csv, else JSON Lines)."""
        entries = self.visible_entries()
        if Path(path).suffix.lower() == ".csv":
            return write_csv(entries, path)
        return write_jsonl(entries, path)

    def export_dialog(self, fmt: str) -> None:
        suffix, name = (
            (".csv", "CSV (*.csv)") if fmt == "csv" else (".jsonl", "JSON Lines (*.jsonl)")
        )
        path, _ = QFileDialog.getSaveFileName(
            self, "Export events", f"vramdeck-events{suffix}", name
        )
        if path:
            if not Path(path).suffix:
                path += suffix
            self.export(path)


__all__ = ["ALL_KINDS", "NO_REQUESTS", "REQUESTS_ONLY", "EventLog"]
