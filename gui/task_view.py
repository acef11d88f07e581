"""The task table: options in combo boxes, states with progress, and Load/Unload per row."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QMenu,
    QStyle,
    QStyleOptionComboBox,
    QTableView,
    QToolButton,
    QWidget,
)

from .option_delegate import OptionCombo, OptionDelegate
from .records import TaskRow
from .state_delegate import StateDelegate
from .table_style import style_read_only_table
from .task_table import ROW_ROLE, Column, TaskTableModel

#: Asked for a hover's tooltip: (task, what: "load" | "warm_up") → the plan in words, or None.
PlanTip = Callable[[str, str], str | None]


class RowActions(QWidget):
    """A row's Load, Warm up and Unload buttons, enabled by the row's state; while a load runs,
    Unload becomes Cancel. Hovering Load or Warm up asks `plan_tip` what the load would evict."""

    def __init__(
        self, task: str, parent: QWidget | None = None, plan_tip: PlanTip | None = None
    ) -> None:
        super().__init__(parent)
        self.task = task
        self.plan_tip = plan_tip
        self.load_button = self._button("Load", "rowLoad")
        self.warm_button = self._button("Warm up", "rowWarmUp")
        self.unload_button = self._button("Unload", "rowUnload")
        self._tips: dict[QObject, str] = {}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(4)
        for button in (self.load_button, self.warm_button, self.unload_button):
            layout.addWidget(button)
        self.cancelling = False

    def _button(self, text: str, name: str) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setObjectName(name)
        button.installEventFilter(self)
        return button

    def show_row(self, row: TaskRow) -> None:
        idle = not (row.busy or row.loading)
        can_load = row.option.available and not row.loaded
        self.load_button.setEnabled(idle and can_load)
        self.warm_button.setEnabled(idle and row.option.available)
        self.cancelling = row.loading
        self.unload_button.setText("Cancel" if row.loading else "Unload")
        self.unload_button.setEnabled(row.loading or (idle and row.loaded))
        reason = row.option.unavailable_reason
        self._tips = {
            self.load_button: f"Cannot load here: {reason}" if reason else f"Load {row.task}",
            self.warm_button: f"Load {row.task} (if needed) and run one small inference",
            self.unload_button: f"Abandon the load of {row.task}: its memory is freed"
            if row.loading
            else f"Unload {row.task} and free its memory",
        }
        for button, tip in self._tips.items():
            button.setToolTip(tip)  # type: ignore[attr-defined]

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """A hover's tooltip on Load / Warm up: the plan, read now (it changes with the rest)."""
        if event.type() == QEvent.Type.ToolTip and self.plan_tip is not None:
            what = {self.load_button: "load", self.warm_button: "warm_up"}.get(watched)  # type: ignore[call-overload]
            plan = self.plan_tip(self.task, what) if what else None
            base = self._tips.get(watched, "")
            watched.setToolTip(f"{base}\n{plan}" if plan else base)  # type: ignore[attr-defined]
        return super().eventFilter(watched, event)


#: The least width of the State and Model columns when the window is narrow.
STATE_LEAST, MODEL_LEAST = 150, 170
#: The model box's inset in its cell (OptionDelegate.updateEditorGeometry), both sides.
CELL_INSET = 4


def combo_width(view: QWidget, text_width: int) -> int:
    """The width of a cell whose option box shows `text_width` pixels of text whole: the
    style's frame, padding and arrow around it (the style sheet's included)."""
    probe = OptionCombo(view)
    probe.ensurePolished()
    option = QStyleOptionComboBox()
    probe.initStyleOption(option)
    size = probe.style().sizeFromContents(
        QStyle.ContentsType.CT_ComboBox, option, QSize(text_width, probe.height()), probe
    )
    probe.deleteLater()
    return size.width() + CELL_INSET


class TaskTableView(QTableView):
    """Shows a TaskTableModel; asks for loads and unloads through its signals."""

    loadRequested = Signal(str)
    unloadRequested = Signal(str)
    warmUpRequested = Signal(str)
    cancelRequested = Signal(str)

    def __init__(self, model: TaskTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("taskTable")
        self.setModel(model)
        self._model = model
        self._actions: dict[str, RowActions] = {}
        self._model_width = 240  # what the Model column wants (its longest option's label)
        # While a load cannot say how far it is, its State cell sweeps: repaint it 20 times a s.
        self._sweep = QTimer(self, interval=50)
        self._sweep.timeout.connect(self.viewport().update)
        #: Set by the window: what a load of a task would evict, for the buttons' tooltips.
        self.plan_tip: PlanTip | None = None
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.options = OptionDelegate(self)
        self.setItemDelegateForColumn(Column.MODEL, self.options)
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
        # The framework is in the model's tooltip (and the option's words); its column gave
        # the row's buttons no room at 1366 px once Where and Requests came.
        self.setColumnHidden(Column.FRAMEWORK, True)

    def fit_columns(self) -> None:
        """Size the columns to their contents, leaving room for the texts that change."""
        metrics = self.fontMetrics()
        room = {  # the widest text a column shows while running
            Column.MEASURED: "000.00 GiB", Column.ESTIMATED: "000.00 GiB",
            Column.LAST_USED: "00 min ago", Column.LOAD_TIME: "000 ms + 00 ms",
            Column.DEVICE: "cuda:0", Column.RESIDENCY: "sleeping · 0.0 s",
            Column.REQUESTS: "0/0/0 · 00 ms",
        }  # fmt: skip
        for column in Column:
            if column in (Column.STATE, Column.ACTIONS):
                continue
            self.resizeColumnToContents(column)
            if column in room:
                wanted = metrics.horizontalAdvance(room[column]) + 16
                self.setColumnWidth(column, max(self.columnWidth(column), wanted))
        # The combo box needs its arrow and frame beside the longest option's name (the closed
        # box shows the name; its list, as wide as it needs, the whole label).
        names = [o.name for r in self._model.rows() for o in r.options]
        widest = max((metrics.horizontalAdvance(text) for text in names), default=200)
        self._model_width = min(300, combo_width(self, widest))
        self._share_width()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._share_width()

    def _share_width(self) -> None:
        """The Model column gives up width so that State keeps STATE_LEAST pixels in a laptop's
        window (what a row is doing is what a person reads), but never below its longest name
        (up to MODEL_LEAST: longer names elide)."""
        others = sum(self.columnWidth(c) for c in Column if c not in (Column.MODEL, Column.STATE))
        spare = self.viewport().width() - others - STATE_LEAST
        least = min(self._model_width, MODEL_LEAST)
        self.setColumnWidth(Column.MODEL, max(least, min(self._model_width, spare)))

    def row_actions(self, task: str) -> RowActions | None:
        """The Load/Unload buttons of `task`'s row (tests drive them)."""
        return self._actions.get(task)

    def _install_row_widgets(self) -> None:
        """(Re)create the combo boxes and buttons after the rows were replaced."""
        self._actions.clear()
        self.fit_columns()
        for i, row in enumerate(self._model.rows()):
            self.openPersistentEditor(self._model.index(i, Column.MODEL))
            actions = RowActions(row.task, plan_tip=self._plan_tip)
            actions.load_button.clicked.connect(
                lambda _=False, t=row.task: self.loadRequested.emit(t)
            )
            actions.warm_button.clicked.connect(
                lambda _=False, t=row.task: self.warmUpRequested.emit(t)
            )
            actions.unload_button.clicked.connect(
                lambda _=False, a=actions: self._unload_or_cancel(a)
            )
            actions.show_row(row)
            self.setIndexWidget(self._model.index(i, Column.ACTIONS), actions)
            self._actions[row.task] = actions
        if self._actions:  # styled now: the probe's width may miss the style sheet's padding
            widest = max(a.sizeHint().width() for a in self._actions.values())
            self.setColumnWidth(Column.ACTIONS, max(self.columnWidth(Column.ACTIONS), widest + 4))
            self._share_width()

    def _plan_tip(self, task: str, what: str) -> str | None:
        return self.plan_tip(task, what) if self.plan_tip is not None else None

    def _unload_or_cancel(self, actions: RowActions) -> None:
        signal = self.cancelRequested if actions.cancelling else self.unloadRequested
        signal.emit(actions.task)

    def _context_menu(self, at: QPoint) -> None:
        row = self.indexAt(at).data(ROW_ROLE)
        if isinstance(row, TaskRow):
            self.row_menu(row).popup(self.viewport().mapToGlobal(at))

    def row_menu(self, row: TaskRow) -> QMenu:
        """The right-click menu of `row`: copy its server's URL, cancel its load."""
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        copy = menu.addAction("Copy server URL")
        copy.setEnabled(bool(row.server_url))
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(row.server_url))
        cancel = menu.addAction("Cancel load")
        cancel.setEnabled(row.loading)
        cancel.triggered.connect(lambda: self.cancelRequested.emit(row.task))
        return menu

    def _on_data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex) -> None:
        unknown = any(r.loading and r.progress is None for r in self._model.rows())
        if unknown and not self._sweep.isActive():
            self._sweep.start()
        elif not unknown:
            self._sweep.stop()
        for i in range(top_left.row(), bottom_right.row() + 1):
            row = self._model.index(i, 0).data(ROW_ROLE)
            if isinstance(row, TaskRow) and (actions := self._actions.get(row.task)):
                actions.show_row(row)

    def option_combo(self, task: str) -> QWidget | None:
        """The combo box of `task`'s row (tests drive it)."""
        i = self._model.row_of(task)
        return self.indexWidget(self._model.index(i, Column.MODEL)) if i >= 0 else None


__all__ = ["RowActions", "TaskTableView"]
