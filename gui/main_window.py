"""The main window: the task table on top; the memory chart, budget view and event log below.

It talks to the manager only through the bridge: bridge signals update the widgets, and the
widgets' requests become bridge coroutines run by @asyncSlot handlers, so no load ever blocks
the GUI thread. Closing is two steps: the first close asks the app to shut the manager down
(closeRequested), and the app closes the window for real once that is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from . import settings as saved
from .bridge import CHANGED_ON_DISK, SAVE, SHUTDOWN, ManagerBridge
from .budget_view import BudgetView
from .chart_slot import DEFAULT_FPS, ChartSlot
from .error_banner import ErrorBanner
from .event_log import EventLog
from .records import BudgetReport, DeviceInfo, LogEntry, MemorySample
from .status_bar import StatusBar
from .task_table import TaskTableModel
from .task_view import TaskTableView

if TYPE_CHECKING:
    from .vram_chart import VramChart
from .window_actions import build_actions

#: Events after which the budget plan may have changed (a measured size, a selection, a config).
REPLAN_KINDS = frozenset({"ModelLoaded", "SelectionChanged", "ConfigReloaded"})
SPLITTERS = ("main", "bottom", "left")


class MainWindow(QMainWindow):
    """The vramdeck panel for one manager (through its bridge)."""

    #: The person asked to close; the app shuts the manager down, then calls `close_now`.
    closeRequested = Signal()

    def __init__(
        self, bridge: ManagerBridge, settings: QSettings | None = None, chart_fps: int = DEFAULT_FPS
    ) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.bridge = bridge
        self.settings = settings
        self._may_close = False
        self._close_requested = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.banner = ErrorBanner(self)
        self.table_model = TaskTableModel(self)
        self.table = TaskTableView(self.table_model, self)
        self.chart_slot = ChartSlot(self, fps=chart_fps)
        self.budget = BudgetView(self)
        self.log = EventLog(self)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.actions_ = build_actions(self)
        self.splitters = self._build_layout()
        self._dirty_rows: set[str] = set()
        self._row_timer = QTimer(self, singleShot=True, interval=30)
        self._row_timer.timeout.connect(self._refresh_dirty_rows)
        self._plan_timer = QTimer(self, singleShot=True, interval=300)
        self._plan_timer.timeout.connect(self._replan)
        self._clock = QTimer(self, interval=1000)
        # Once a second: "Last used" moves with the clock, and no state can stay stale for long.
        self._clock.timeout.connect(self._refresh_rows)
        self._clock.start()
        self._connect()
        self._reset_rows()
        self._show_config(str(bridge.config_path))
        self.resize(1400, 900)
        self._restore_layout()

    # ----------------------------------------------------------------- construction

    def _build_layout(self) -> dict[str, QSplitter]:
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.chart_slot)
        left.addWidget(self.budget)
        left.setStretchFactor(0, 4)
        left.setStretchFactor(1, 1)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(left)
        bottom.addWidget(self.log)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        main = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(self.table)
        main.addWidget(bottom)
        main.setStretchFactor(0, 2)
        main.setStretchFactor(1, 3)
        splitters = {"main": main, "bottom": bottom, "left": left}
        for name, splitter in splitters.items():
            splitter.setObjectName(f"{name}Splitter")
            splitter.setChildrenCollapsible(False)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 4, 6, 0)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(main, 1)
        self.setCentralWidget(central)
        return splitters

    def _connect(self) -> None:
        b, a = self.bridge, self.actions_
        b.eventLogged.connect(self._on_event)
        b.memorySampled.connect(self._on_sample)
        b.taskChanged.connect(self._refresh_row)
        b.tasksReset.connect(self._reset_rows)
        b.busyChanged.connect(self._on_busy)
        b.errorRaised.connect(self.banner.show_error)
        b.notice.connect(lambda text: self.status.showMessage(text, 6000))
        b.configDirtyChanged.connect(lambda _d: self._show_config(str(b.config_path)))
        b.configLoaded.connect(self._on_config_loaded)
        b.budgetPlanned.connect(self._on_budget)
        b.devicesDetected.connect(self._on_devices)
        b.shutdownProgress.connect(self._on_shutdown_progress)
        self.table_model.optionChosen.connect(self.select_option)
        self.table_model.pinToggled.connect(b.set_pinned)
        self.table.loadRequested.connect(self.load_task)
        self.table.unloadRequested.connect(self.unload_task)
        a.open_config.triggered.connect(self.open_config)
        a.reload_config.triggered.connect(lambda: self.reload_config())
        a.save_config.triggered.connect(self.save_config)
        a.warm_up.triggered.connect(self.warm_up)
        a.unload_all.triggered.connect(self.unload_all)
        a.evict.triggered.connect(self.evict_lru)
        a.validate.triggered.connect(self.validate_budget)
        a.export_csv.triggered.connect(lambda: self.log.export_dialog("csv"))
        a.export_jsonl.triggered.connect(lambda: self.log.export_dialog("jsonl"))
        a.quit.triggered.connect(self.close)
        for seconds, action in a.windows.items():
            action.triggered.connect(lambda _c=False, s=seconds: self.set_chart_window(s))

    # ----------------------------------------------------------------- bridge → widgets

    def _on_event(self, entry: LogEntry) -> None:
        self.log.add_entry(entry)
        self.chart_slot.add_event(entry)
        if entry.kind in REPLAN_KINDS:
            self._plan_timer.start()

    def _on_sample(self, sample: MemorySample) -> None:
        self.chart_slot.add_sample(sample)
        self.status.show_sample(sample)

    def _refresh_row(self, task: str) -> None:
        """Read `task`'s row again soon: a load brings several events in a few milliseconds,
        and one refresh for all of them is enough."""
        self._dirty_rows.add(task)
        if not self._row_timer.isActive():
            self._row_timer.start()

    def flush(self) -> None:
        """Show now what is queued: changed rows and new log lines (screenshots, tests)."""
        self._refresh_dirty_rows()
        self.log.flush()

    def _refresh_dirty_rows(self) -> None:
        tasks, self._dirty_rows = self._dirty_rows, set()
        for task in tasks:
            row = self.bridge.task_row(task)
            if row is not None:
                self.table_model.update_row(row)

    def _refresh_rows(self) -> None:
        for row in self.bridge.task_rows():
            self.table_model.update_row(row)

    def _reset_rows(self) -> None:
        self.table_model.set_rows(self.bridge.task_rows())
        tasks = self.bridge.task_names()
        self.chart_slot.set_task_order(tasks)
        self.budget.set_task_order(tasks)
        self._plan_timer.start()

    def _on_busy(self, key: str, busy: bool) -> None:
        if key == SHUTDOWN:
            for action in self.actions_.commands():
                action.setEnabled(not busy)
            return
        if key == SAVE:  # Save is there only while the selections differ from the file
            self.actions_.save_config.setEnabled(not busy and self._may_save())
            return
        for action in self.actions_.busy_keys.get(key, []):
            action.setEnabled(not busy and not self._close_requested)

    def _may_save(self) -> bool:
        return self.bridge.config_dirty and not self._close_requested

    def _on_budget(self, report: BudgetReport) -> None:
        self.budget.show_report(report)

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        primary = self.bridge.primary_device
        self.status.show_devices(devices, primary)
        self.chart_slot.set_device(primary)

    def _on_config_loaded(self, path: str) -> None:
        if self.settings is not None:
            saved.remember_config(self.settings, Path(path))
        self.banner.hide()
        self.status.showMessage(f"Loaded {path}", 5000)
        self._show_config(path)

    def _show_config(self, path: str) -> None:
        dirty = self.bridge.config_dirty
        self.actions_.save_config.setEnabled(self._may_save())
        self.setWindowTitle(f"{Path(path).name}[*] — vramdeck")
        self.setWindowModified(dirty)
        self.status.show_config(path, dirty)

    def _on_shutdown_progress(self, done: int, total: int) -> None:
        text = f"Unloading models… {done} of {total}" if total else "Shutting down…"
        self.status.show_progress(text, done, max(total, 1))

    # ----------------------------------------------------------------- commands

    @asyncSlot(str)
    async def load_task(self, task: str) -> None:
        await self.bridge.load(task)

    @asyncSlot(str)
    async def unload_task(self, task: str) -> None:
        await self.bridge.unload(task)

    @asyncSlot(str, str)
    async def select_option(self, task: str, option: str) -> None:
        if not await self.bridge.select(task, option):
            self._refresh_row(task)  # the combo box goes back to what the manager has

    @asyncSlot()
    async def warm_up(self) -> None:
        await self.bridge.warm_up(force=True)

    @asyncSlot()
    async def unload_all(self) -> None:
        await self.bridge.unload_all()

    @asyncSlot()
    async def evict_lru(self) -> None:
        task = await self.bridge.evict_lru()
        if task:
            self.status.showMessage(f"Evicted {task}", 5000)

    @asyncSlot()
    async def validate_budget(self) -> None:
        report = await self.bridge.plan_budget()
        if report is not None:
            verdict = "fit together" if report.valid else "do NOT fit together"
            self.status.showMessage(f"Budget validated: the selected models {verdict}", 6000)

    def reload_config(self, path: str | None = None) -> asyncio.Task[Any]:
        """Read the config again (or `path`); a bad file keeps the current config."""
        return self._spawn(self.bridge.reload_config(path))

    def save_config(self, overwrite: bool = False) -> asyncio.Task[Any]:
        """Save the selections; a file changed on disk meanwhile is overwritten only if the
        person says so (asked outside the task: a modal dialog must not run inside its step)."""

        async def save() -> None:
            if await self.bridge.save_config(overwrite=overwrite) == CHANGED_ON_DISK:
                QTimer.singleShot(0, self, self._ask_overwrite)

        return self._spawn(save())

    def _ask_overwrite(self) -> None:
        if self.confirm_overwrite(self.bridge.config_path):
            self.save_config(overwrite=True)
        else:
            self.status.showMessage("Not saved: the file changed on disk", 6000)

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask whether to save over a config that changed on disk (tests replace this)."""
        answer = QMessageBox.question(
            self,
            "The config changed on disk",
            f"{path} was changed by another program since vramdeck read it.\n\n"
            "Save your selections into it anyway? Only the `selected:` lines change; "
            "the other edits stay.",
        )
        return answer == QMessageBox.StandardButton.Yes

    def open_config(self) -> None:
        # A sync slot on purpose: the modal dialog runs a nested event loop, which must not
        # happen inside an asyncio task's step.
        path = self.choose_config_path()
        if path:
            self.reload_config(path)

    def choose_config_path(self) -> str | None:
        """Ask for a config file (tests replace this)."""
        start = str(self.bridge.config_path.parent)
        path, _ = QFileDialog.getOpenFileName(
            self, "Open config", start, "Configs (*.yaml *.yml);;All files (*)"
        )
        return path or None

    def _replan(self) -> None:
        if not self._close_requested:
            self._spawn(self.bridge.plan_budget(key="plan"))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def chart(self) -> VramChart:
        """The memory chart (built now if the window has not built it yet)."""
        return self.chart_slot.chart

    def build_chart_soon(self, delay_ms: int = 30) -> None:
        """Build the chart once the window has painted (its imports take ~0.4 s)."""
        QTimer.singleShot(delay_ms, self, self.chart_slot.build)

    def set_chart_window(self, seconds: int) -> None:
        self.chart_slot.set_window(seconds)
        for s, action in self.actions_.windows.items():
            action.setChecked(s == seconds)
        if self.settings is not None:
            self.settings.setValue("chart/window_s", seconds)

    # ----------------------------------------------------------------- layout and closing

    def _default_layout(self) -> None:
        rows = max(3, min(len(self.table_model.rows()), 10))
        table_height = rows * self.table.verticalHeader().defaultSectionSize() + 60
        self.splitters["main"].setSizes([table_height, 900 - table_height])
        self.splitters["bottom"].setSizes([640, 760])
        self.splitters["left"].setSizes([420, 130])

    def _restore_layout(self) -> None:
        self._default_layout()
        if self.settings is None:
            self.set_chart_window(60)
            return
        if (geometry := saved.layout_value(self.settings, "geometry")) is not None:
            self.restoreGeometry(geometry)
        for name in SPLITTERS:
            if (state := saved.layout_value(self.settings, f"splitter/{name}")) is not None:
                self.splitters[name].restoreState(state)
        self.set_chart_window(saved.chart_window_s(self.settings))

    def save_layout(self) -> None:
        if self.settings is None:
            return
        saved.save_layout_value(self.settings, "geometry", self.saveGeometry())
        for name, splitter in self.splitters.items():
            saved.save_layout_value(self.settings, f"splitter/{name}", splitter.saveState())
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._may_close:
            self._clock.stop()
            self._plan_timer.stop()
            self._row_timer.stop()
            event.accept()
            return
        event.ignore()
        if not self._close_requested:
            self._close_requested = True
            self.save_layout()
            for action in self.actions_.commands():
                action.setEnabled(False)
            self.status.show_progress("Shutting down…")
            self.closeRequested.emit()

    def close_now(self) -> None:
        """Close for real (the manager is shut down)."""
        self._may_close = True
        self.close()


__all__ = ["MainWindow"]
