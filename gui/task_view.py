"""The task table: options in combo boxes, states with progress, and Load/Unload per row."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QTableView,
    QToolButton,
    QWidget,
)

from .option_delegate import OptionDelegate
from .records import TaskRow
from .state_delegate import StateDelegate
from .table_style import style_read_only_table
from .task_table import ROW_ROLE, Column, TaskTableModel


class RowActions(QWidget):
    """A row's Load and Unload buttons, enabled by the row's state."""

    def __init__(self, task: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.task = task
        self.load_button = QToolButton(self)
        self.load_button.setText("Load")
        self.load_button.setObjectName("rowLoad")
        self.unload_button = QToolButton(self)
        self.unload_button.setText("Unload")
        self.unload_button.setObjectName("rowUnload")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(4)
        layout.addWidget(self.load_button)
        layout.addWidget(self.unload_button)

    def show_row(self, row: TaskRow) -> None:
        idle = not (row.busy or row.loading)
        can_load = row.option.available and not row.loaded
        self.load_button.setEnabled(idle and can_load)
        self.unload_button.setEnabled(idle and row.loaded)
        reason = row.option.unavailable_reason
        self.load_button.setToolTip(f"Cannot load here: {reason}" if reason else f"Load {row.task}")
        self.unload_button.setToolTip(f"Unload {row.task} and free its memory")


class TaskTableView(QTableView):
    """Shows a TaskTableModel; asks for loads and unloads through its signals."""

    loadRequested = Signal(str)
    unloadRequested = Signal(str)

    def __init__(self, model: TaskTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("taskTable")
        self.setModel(model)
        self._model = model
        self._actions: dict[str, RowActions] = {}
        self.setItemDelegateForColumn(Column.MODEL, OptionDelegate(self))
        self.setItemDelegateForColumn(Column.STATE, StateDelegate(self))
        style_read_only_table(self, row_height=34)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._size_columns()
        model.modelReset.connect(self._install_row_widgets)
        model.dataChanged.connect(self._on_data_changed)
        self._install_row_widgets()

    def _size_columns(self) -> None:
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setMinimumSectionSize(36)
        # Interactive, sized to the contents when rows are set (fit_columns): ResizeToContents
        # would measure every row again at each change of a row, several times a load.
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(Column.STATE, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(Column.ACTIONS, QHeaderView.ResizeMode.Fixed)
        probe = RowActions("", self)
        probe.ensurePolished()
        self.setColumnWidth(Column.ACTIONS, probe.sizeHint().width() + 12)
        probe.deleteLater()

    def fit_columns(self) -> None:
        """Size the columns to their contents, leaving room for the texts that change."""
        metrics = self.fontMetrics()
        room = {  # the widest text a column shows while running
            Column.MEASURED: "000.00 GiB", Column.ESTIMATED: "000.00 GiB",
            Column.LAST_USED: "00 min ago", Column.LOAD_TIME: "00 min 00 s",
            Column.DEVICE: "cuda:0",
        }  # fmt: skip
        for column in Column:
            if column in (Column.STATE, Column.ACTIONS):
                continue
            self.resizeColumnToContents(column)
            if column in room:
                wanted = metrics.horizontalAdvance(room[column]) + 16
                self.setColumnWidth(column, max(self.columnWidth(column), wanted))
        # The combo box needs its arrow and frame beside the longest option's label.
        labels = [o.label for r in self._model.rows() for o in r.options]
        widest = max((metrics.horizontalAdvance(text) for text in labels), default=200)
        self.setColumnWidth(Column.MODEL, min(360, widest + 48))  # the State's reason needs room

    def row_actions(self, task: str) -> RowActions | None:
        """The Load/Unload buttons of `task`'s row (tests drive them)."""
        return self._actions.get(task)

    def _install_row_widgets(self) -> None:
        """(Re)create the combo boxes and buttons after the rows were replaced."""
        self._actions.clear()
        self.fit_columns()
        for i, row in enumerate(self._model.rows()):
            self.openPersistentEditor(self._model.index(i, Column.MODEL))
            actions = RowActions(row.task)
            actions.load_button.clicked.connect(
                lambda _=False, t=row.task: self.loadRequested.emit(t)
            )
            actions.unload_button.clicked.connect(
                lambda _=False, t=row.task: self.unloadRequested.emit(t)
            )
            actions.show_row(row)
            self.setIndexWidget(self._model.index(i, Column.ACTIONS), actions)
            self._actions[row.task] = actions

    def _on_data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex) -> None:
        for i in range(top_left.row(), bottom_right.row() + 1):
            row = self._model.index(i, 0).data(ROW_ROLE)
            if isinstance(row, TaskRow) and (actions := self._actions.get(row.task)):
                actions.show_row(row)

    def option_combo(self, task: str) -> QWidget | None:
        """The combo box of `task`'s row (tests drive it)."""
        i = self._model.row_of(task)
        return self.indexWidget(self._model.index(i, Column.MODEL)) if i >= 0 else None


__all__ = ["RowActions", "TaskTableView"]
