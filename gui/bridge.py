"""The one gui module that imports `manager`: manager events in, Qt signals out; commands as
coroutines that report failures as signals instead of raising into a slot.

Widgets never see manager objects: the bridge copies what they show into `gui.records` values.
Every manager event arrives on the loop's thread (the qasync loop is the GUI thread), so the
handlers may emit Qt signals directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal

from vramdeck.manager import (
    ConfigError,
    ConfigReloaded,
    Event,
    LoadFailed,
    MemorySampled,
    ModelManager,
    ModelUnloaded,
    RemovalReason,
    Residency,
    SelectionChanged,
    TaskEvent,
)
from vramdeck.manager.config_store import ConfigChangedOnDisk, save_selections
from vramdeck.manager.logs import setup_file_logging

from .bridge_collections import collect_on_gui_thread
from .bridge_contract import ContractCommands
from .bridge_records import budget_report, log_entry, server_url, task_row, thrash_of
from .bridge_serving import ServingControl
from .formatting import plain_reason
from .records import BudgetReport, DeviceInfo, LogEntry, MemorySample, TaskRow

logger = logging.getLogger(__name__)
T = TypeVar("T")


#: Frameworks whose models load into this process (and so import torch).
IN_PROCESS_FRAMEWORKS = ("transformers", "pytorch")

#: Busy keys of the commands that act on all tasks (the toolbar's actions).
WARMUP, UNLOAD_ALL, EVICT, RELOAD, VALIDATE, SHUTDOWN, SAVE = (
    "warmup", "unload_all", "evict", "reload", "validate", "shutdown", "save",
)  # fmt: skip
#: What save_config reports.
SAVED, CHANGED_ON_DISK = "saved", "changed on disk"


class ManagerBridge(ContractCommands, QObject):
    """Re-emits a ModelManager's events as Qt signals and runs its commands for the widgets."""

    #: A manager event as a log line (every event but MemorySampled).
    eventLogged = Signal(LogEntry)
    #: A MemorySample, ~10 per second per device.
    memorySampled = Signal(MemorySample)
    #: The task whose row should be read again.
    taskChanged = Signal(str)
    #: The set of tasks may have changed (a config was loaded): read every row again.
    tasksReset = Signal()
    #: A command started (True) or finished (False); the key is e.g. "warmup" or "load:<task>".
    busyChanged = Signal(str, bool)
    #: Something failed: a short title and the reason.
    errorRaised = Signal(str, str)
    #: A passing remark for the status bar.
    notice = Signal(str)
    #: The selections differ from the config file (True), or match it again (False).
    configDirtyChanged = Signal(bool)
    #: A config file was loaded; its path.
    configLoaded = Signal(str)
    #: A BudgetReport from validate_memory_budget.
    budgetPlanned = Signal(BudgetReport)
    #: The devices and their probe were detected: list[DeviceInfo].
    devicesDetected = Signal(list)
    #: While shutting down: models unloaded so far, of how many.
    shutdownProgress = Signal(int, int)
    #: Models reload each other in a loop (a Thrashing event): the tasks, and what it cost.
    thrashing = Signal(tuple, str)

    def __init__(self, manager: ModelManager, parent: QObject | None = None) -> None:
        super().__init__(parent)
        collect_on_gui_thread()  # a failed load's collection never finalizes Qt objects off it
        self._manager = manager
        self._busy: set[str] = set()
        self._load_failures: Counter[str] = Counter()  # task → LoadFailed events seen
        self._config_dirty = False
        self._config_mtime = _mtime(manager.config_path)
        self._devices: list[DeviceInfo] = []
        self._prerequisite: asyncio.Future[Any] | None = None
        self._shutdown_total = 0
        self._shutdown_done = 0
        self._closed = False
        #: The panel's endpoint (started by the session) and Try-it's path.
        self.serving = ServingControl(manager, self)
        self.serving.countsChanged.connect(self.taskChanged)
        self._unsubscribe = manager.events.subscribe(self._on_event)

    # ----------------------------------------------------------------- state for the widgets

    @property
    def config_path(self) -> Path:
        return Path(self._manager.config_path)

    @property
    def config_mtime(self) -> float | None:
        """The config file's mtime when it was loaded (what a later Save compares against)."""
        return self._config_mtime

    @property
    def config_dirty(self) -> bool:
        """Whether a selection changed since the config was loaded."""
        return self._config_dirty

    def selections(self) -> dict[str, str]:
        """task → selected option, as a Save would write them."""
        return {name: task.selected for name, task in self._manager.tasks.items()}

    @property
    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    @property
    def primary_device(self) -> str:
        """The first CUDA device, else the host (``cpu``); ``cpu`` until devices are detected."""
        cuda = [d.device for d in self._devices if d.device.startswith("cuda")]
        return cuda[0] if cuda else "cpu"

    def is_busy(self, key: str) -> bool:
        return key in self._busy

    def task_names(self) -> list[str]:
        return list(self._manager.tasks)

    def loads_in_process(self) -> bool:
        """Whether any option that can load here loads in this process (torch, transformers)."""
        return any(
            o.framework in IN_PROCESS_FRAMEWORKS and o.available
            for t in self._manager.tasks.values()
            for o in t.options.values()
        )

    def model_ids(self) -> list[str]:
        return [o.model_id for t in self._manager.tasks.values() for o in t.options.values()]

    def task_rows(self) -> list[TaskRow]:
        return [self._row(name) for name in self._manager.tasks]

    def task_row(self, task: str) -> TaskRow | None:
        return self._row(task) if task in self._manager.tasks else None

    def _row(self, name: str) -> TaskRow:
        status = self._manager.task_status(name, primary_device=self.primary_device)
        busy = any(key.endswith(f":{name}") for key in self._busy)
        url = server_url(self._manager.loaded_models.get(name))
        counts = self.serving.counts(name)
        return task_row(self._manager.tasks[name], status, busy=busy, requests=counts,
                        server_url=url)  # fmt: skip

    # ----------------------------------------------------------------- events → signals

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MemorySampled):
            self.memorySampled.emit(self.sample_record(event))
            return
        self.eventLogged.emit(log_entry(event))
        if isinstance(event, LoadFailed):
            self._load_failures[event.task] += 1
        self.serving.on_event(event)
        thrash = thrash_of(event)
        if thrash is not None:
            self.thrashing.emit(*thrash)
        if isinstance(event, ConfigReloaded):
            self._set_dirty(False)
            self.tasksReset.emit()
            return
        if isinstance(event, SelectionChanged):
            self._set_dirty(True)
        if isinstance(event, ModelUnloaded) and event.cause is RemovalReason.SHUTDOWN:
            self._shutdown_done += 1
            self.shutdownProgress.emit(self._shutdown_done, self._shutdown_total)
        if isinstance(event, TaskEvent):
            self.taskChanged.emit(event.task)

    def _set_dirty(self, dirty: bool) -> None:
        if dirty != self._config_dirty:
            self._config_dirty = dirty
            self.configDirtyChanged.emit(dirty)

    # ----------------------------------------------------------------- commands

    def set_prerequisite(self, future: asyncio.Future[Any] | None) -> None:
        """Loads wait for `future` first (e.g. the demo models being made)."""
        self._prerequisite = future

    async def _ready(self) -> None:
        if self._prerequisite is not None and not self._prerequisite.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._prerequisite)

    async def _run(self, key: str, title: str, work: Callable[[], Awaitable[T]]) -> T | None:
        """Run `work` unless `key` is running already; a failure becomes errorRaised."""
        if key in self._busy or (self._closed and key != SHUTDOWN):
            return None
        task = key.partition(":")[2]
        failures = self._load_failures[task]
        with self._busy_while(key):
            try:
                return await work()
            except (ConfigError, ValueError, RuntimeError, OSError) as exc:
                # The title names the task: "Could not load a: a: OSError: …" said it twice.
                self.errorRaised.emit(title, plain_reason(str(exc), task))
                if self._load_failures[task] == failures:  # else its LoadFailed is in the log
                    error = LogEntry(
                        time.time(), "Error", reason=f"{title}: {exc}", severity="error"
                    )
                    self.eventLogged.emit(error)
                return None

    @contextlib.contextmanager
    def _busy_while(self, key: str) -> Iterator[None]:
        self._busy.add(key)
        self._busy_changed(key, True)
        try:
            yield
        finally:
            self._busy.discard(key)
            self._busy_changed(key, False)

    def _busy_changed(self, key: str, busy: bool) -> None:
        self.busyChanged.emit(key, busy)
        task = key.partition(":")[2]
        if task:
            self.taskChanged.emit(task)

    async def start(self, sample_interval_s: float = 0.1) -> None:
        """Detect the devices (off the GUI thread: NVML can take a moment) and start sampling."""
        readings = await asyncio.to_thread(self._manager.device_readings)
        self._devices = [DeviceInfo(d, r.name, r.probe) for d, r in readings.items()]
        self.devicesDetected.emit(self.devices)
        if not self._closed:
            self._manager.start_monitor(interval_s=sample_interval_s)
            self.tasksReset.emit()  # measured figures depend on the device now known

    async def load(self, task: str) -> bool:
        async def work() -> bool:
            await self._ready()
            await self._manager.load_model(task)
            return True

        return bool(await self._run(f"load:{task}", f"Could not load {task}", work))

    async def unload(self, task: str) -> bool:
        async def work() -> bool:
            await self._manager.unload_model(task)
            return True

        return bool(await self._run(f"unload:{task}", f"Could not unload {task}", work))

    async def select(self, task: str, option: str) -> bool:
        """Select `option` for `task`; a loaded task switches to it (the old one comes back if
        the new one fails)."""

        async def work() -> bool:
            await self._ready()
            await self._manager.set_selected_model(task, option)
            return True

        title = f"Could not switch {task} to {option}"
        return bool(await self._run(f"select:{task}", title, work))

    async def warm_up(self, *, force: bool = True) -> None:
        """Load every selected model (only if the config asks for it, unless `force`)."""

        async def work() -> None:
            await self._ready()
            await self._manager.warmup_models(force=force)

        if force or self._manager.inference_config.warmup_on_startup:
            await self._run(WARMUP, "Warm-up failed", work)

    async def unload_all(self) -> None:
        await self._run(UNLOAD_ALL, "Could not unload all models", self._manager.unload_all)

    async def evict_lru(self) -> str | None:
        async def work() -> str | None:
            task = await self._manager.evict_lru_model()
            if task is None:
                self.notice.emit("Nothing to evict: no loaded model that is unpinned and idle")
            return task

        return await self._run(EVICT, "Could not evict", work)

    async def reload_config(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Read the config again, or another one; on error the current one stays in force."""

        async def work() -> bool:
            await self._manager.reload_config(path)
            self._config_mtime = _mtime(self._manager.config_path)
            self.configLoaded.emit(str(self._manager.config_path))
            return True

        old = self.config_path.name
        if path is None or Path(path).resolve() == self.config_path.resolve():  # noqa: ASYNC240
            title = f"Could not reload {old}; the version read before stays in force"
        else:
            title = f"Could not load {Path(path).name}; still using {old}"
        return bool(await self._run(RELOAD, title, work))

    async def save_config(self, *, overwrite: bool = False) -> str | None:
        """Write the selections into the config file (only `selected:` values change).

        Returns SAVED, or CHANGED_ON_DISK when the file changed since it was read and
        `overwrite` is False (then nothing was written: ask the person first); None on failure,
        reported through errorRaised.
        """

        async def work() -> str:
            path = self._manager.config_path
            expected = None if overwrite else self._config_mtime
            try:
                await asyncio.to_thread(
                    save_selections, path, self.selections(), expected_mtime=expected
                )
            except ConfigChangedOnDisk:
                return CHANGED_ON_DISK
            self._config_mtime = _mtime(path)
            self._set_dirty(False)
            self.notice.emit(f"Saved the selections to {path} (the previous file is {path}.bak)")
            return SAVED

        return await self._run(SAVE, f"Could not save {self.config_path.name}", work)

    async def plan_budget(self, *, key: str = VALIDATE) -> BudgetReport | None:
        """validate_memory_budget, off the GUI thread (it reads the devices)."""

        async def work() -> BudgetReport:
            readings = await asyncio.to_thread(self._manager.device_readings)
            report = budget_report(self._manager.check_budget(readings=readings), time.time())
            self.budgetPlanned.emit(report)
            return report

        return await self._run(key, "Could not validate the memory budget", work)

    async def shutdown(self) -> None:
        """Unload everything and stop the manager; shutdownProgress reports each model."""

        async def work() -> None:
            # Parked and sleeping models are freed at shutdown too: each is one step.
            m = self._manager
            self._shutdown_total = sum(m.residency(t) is not Residency.OFF for t in m.tasks)
            self._shutdown_done = 0
            self.shutdownProgress.emit(0, self._shutdown_total)
            await self._manager.shutdown()

        if self._closed:
            return
        self._closed = True
        try:
            await self.serving.close()  # stop listening first: no request starts a load now
            await self._run(SHUTDOWN, "Shutdown failed", work)
        finally:
            self._unsubscribe()


def start_file_logging() -> Path:
    """Log to the rotating file in the user's state folder (keys masked); returns its path."""
    return setup_file_logging()


def open_bridge(config_path: str | os.PathLike[str]) -> ManagerBridge:
    """A bridge over a new ModelManager for `config_path`.

    Raises ValueError (the manager's ConfigError) naming file, line and key for a bad config.
    """
    return ManagerBridge(ModelManager(config_path))


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


__all__ = [
    "CHANGED_ON_DISK", "EVICT", "RELOAD", "SAVE", "SAVED", "SHUTDOWN", "UNLOAD_ALL", "VALIDATE",
    "WARMUP", "ManagerBridge", "open_bridge", "start_file_logging",
]  # fmt: skip
