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
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from . import settings as saved
from .bridge import SAVE, SHUTDOWN, ManagerBridge
from .budget_legend import BudgetLegend
from .budget_view import BudgetView
from .chart_slot import DEFAULT_FPS, ChartSlot
from .config_file_commands import ConfigFileCommands
from .error_banner import ErrorBanner
from .event_log import EventLog
from .plan_prompts import PlanPrompts, ThrashBar
from .records import BudgetReport, DeviceInfo, GpuActivity, LogEntry, MemorySample
from .serving_panel import ServingPanel
from .status_bar import StatusBar
from .task_table import TaskTableModel
from .task_view import TaskTableView
from .unsaved import SelectionsOnFile
from .warmup_report import WarmupReport, tasks_to_warm
from .window_actions import build_actions
from .window_layout import WindowLayout

if TYPE_CHECKING:
    from .vram_chart import VramChart

#: Events after which the budget plan may have changed (a measured size, a selection, a config).
REPLAN_KINDS = frozenset({"ModelLoaded", "SelectionChanged", "ConfigReloaded"})
#: How often the chart's line about the GPU's other processes is read (nvitop's default).
ACTIVITY_INTERVAL_MS = 2000


class MainWindow(ConfigFileCommands):
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
        self._close_after_save = False
        self.on_file = SelectionsOnFile(bridge.selections())
        self._tasks: set[asyncio.Task[Any]] = set()
        self.banner = ErrorBanner(self)
        self.table_model = TaskTableModel(self)
        self.table = TaskTableView(self.table_model, self)
        self.thrash_bar = ThrashBar(self)
        self.prompts = PlanPrompts(bridge, self.thrash_bar, settings, self)
        self.table.plan_tip = self.prompts.plan_tip
        self.table.options.switch_tip = self.prompts.switch_tip
        self.chart_slot = ChartSlot(self, fps=chart_fps)
        self.budget = BudgetView(self)
        self.budget_legend = BudgetLegend(self)
        self.log = EventLog(self)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.actions_ = build_actions(self)
        self.serving = ServingPanel(self, bridge, self.status, self.banner, settings)
        self.serving.add_to_menus(self.actions_.menus["models"], self.actions_.menus["view"])
        self.actions_.menus["models"].addAction(self.prompts.ask_toggle)
        self.prompts.follow_warm_up_hover(self.actions_.warm_up)
        # Given the bridge's rows, not a method of this window: no reference cycle through it.
        rows = bridge.task_rows
        self.warmup_report = WarmupReport(self.status, self.banner, lambda: tasks_to_warm(rows()))
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
        self._activity_timer = QTimer(self, interval=ACTIVITY_INTERVAL_MS)
        self._activity_timer.timeout.connect(self._read_activity)
        self._connect()
        self._reset_rows()
        self._show_config(str(bridge.config_path))
        self.layout_ = WindowLayout(self, self.splitters, self.table, settings)
        self.layout_.restore()
        self.set_chart_window(saved.chart_window_s(settings) if settings is not None else 60)

    # ----------------------------------------------------------------- construction

    def _build_layout(self) -> dict[str, QSplitter]:
        budget = QWidget(self)
        budget_layout = QVBoxLayout(budget)
        budget_layout.setContentsMargins(0, 0, 6, 4)
        budget_layout.setSpacing(0)
        budget_layout.addWidget(self.budget, 1)
        budget_layout.addWidget(self.budget_legend)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.chart_slot)
        left.addWidget(budget)
        left.setStretchFactor(0, 1)
        left.setStretchFactor(1, 0)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(left)
        bottom.addWidget(self.log)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        main = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(self.table)
        main.addWidget(bottom)
        main.setStretchFactor(0, 0)  # the table keeps its rows' height; the chart grows
        main.setStretchFactor(1, 1)
        splitters = {"main": main, "bottom": bottom, "left": left}
        for name, splitter in splitters.items():
            splitter.setObjectName(f"{name}Splitter")
            splitter.setChildrenCollapsible(False)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 4, 6, 0)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(self.thrash_bar)
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
        b.busyChanged.connect(self.warmup_report.busy_changed)
        b.eventLogged.connect(self.warmup_report.event_logged)
        b.errorRaised.connect(self.banner.show_error)
        b.notice.connect(self.status.notify)
        b.configDirtyChanged.connect(self._on_dirty_changed)
        b.configLoaded.connect(self._on_config_loaded)
        b.budgetPlanned.connect(self._on_budget)
        b.devicesDetected.connect(self._on_devices)
        b.shutdownProgress.connect(self._on_shutdown_progress)
        self.table_model.optionChosen.connect(self.select_option)
        self.table_model.pinToggled.connect(b.set_pinned)
        self.table.loadRequested.connect(self.load_task)
        self.table.unloadRequested.connect(self.unload_task)
        self.table.warmUpRequested.connect(self.warm_up_task)
        self.table.cancelRequested.connect(self.cancel_load)
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
        if entry.kind == "SelectionChanged":  # b then a again: the title loses its *
            self._show_config(str(self.bridge.config_path))

    def _on_dirty_changed(self, dirty: bool) -> None:
        if not dirty:  # just saved, or just read: the file holds the selections now
            self.on_file.now_on_file(self.bridge.selections())
        self._show_config(str(self.bridge.config_path))

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
        self.budget_legend.task_order = tasks
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

    def _on_budget(self, report: BudgetReport) -> None:
        self.budget.show_report(report)
        self.budget_legend.show_host_tier(self.bridge.host_tier())
        self.budget_legend.show_report(report)

    def _read_activity(self) -> None:
        """Utilisation and other processes of the chart's device, where NVML reads it (in a
        thread, through the bridge); for a GPU it cannot read, say why there is nothing. Host
        RAM has neither: no line (on a machine without a GPU it would only be jargon)."""
        if not self.isVisible() or self._close_requested:
            return
        device = self.chart_slot.device or self.bridge.primary_device
        info = next((d for d in self.bridge.devices if d.device == device), None)
        if info is not None and info.probe == "nvml":
            self._spawn(self._show_activity(device))
        elif device.startswith("cuda"):
            self.chart_slot.show_activity(GpuActivity(device, nvml=False))
        else:
            self.chart_slot.show_activity(None)

    async def _show_activity(self, device: str) -> None:
        self.chart_slot.show_activity(await self.bridge.gpu_activity(device))

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        primary = self.bridge.primary_device
        self.status.show_devices(devices, primary)
        self.chart_slot.set_device(primary)
        self._read_activity()

    def _on_config_loaded(self, path: str) -> None:
        self.on_file.now_on_file(self.bridge.selections())
        if self.settings is not None:
            saved.remember_config(self.settings, Path(path))
        self.banner.hide()
        self.status.showMessage(f"Loaded {path}", 5000)
        self._show_config(path)

    def _show_config(self, path: str) -> None:
        dirty = self.selections_differ
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
        await self.prompts.load(task)

    @asyncSlot(str)
    async def warm_up_task(self, task: str) -> None:
        await self.prompts.warm_up(task)

    @asyncSlot(str)
    async def cancel_load(self, task: str) -> None:
        if await self.bridge.cancel_load(task):
            self.status.showMessage(f"Cancelled the load of {task}", 5000)

    @asyncSlot(str)
    async def unload_task(self, task: str) -> None:
        await self.bridge.unload(task)

    @asyncSlot(str, str)
    async def select_option(self, task: str, option: str) -> None:
        if not await self.prompts.select(task, option):
            self._refresh_row(task)  # the combo box goes back to what the manager has

    @asyncSlot()
    async def warm_up(self) -> None:
        await self.prompts.warm_up_all()

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

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.layout_.shown(len(self.table_model.rows()))
        if not self._activity_timer.isActive():
            self._activity_timer.start()
            self._read_activity()

    def save_layout(self) -> None:
        self.layout_.save()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._may_close:
            self._clock.stop()
            self._activity_timer.stop()
            self._plan_timer.stop()
            self._row_timer.stop()
            event.accept()
            return
        event.ignore()
        if not self._close_requested and self._unsaved_may_close():
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
