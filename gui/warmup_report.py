"""What a warm-up is doing, said where a person looks: "Warming up 3 models…" with a bar in
the status bar while it runs (at start-up the first load also waits for torch to import, so
the rows can read "unloaded" for seconds), and the models it could not load in the banner."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject

from .bridge import WARMUP
from .error_banner import ErrorBanner
from .formatting import plain_reason
from .records import LogEntry, TaskRow
from .status_bar import StatusBar


def models(n: int) -> str:
    return f"{n} model" if n == 1 else f"{n} models"


def tasks_to_warm(rows: list[TaskRow]) -> list[str]:
    """The tasks a warm-up would load now: selected option available and not loaded."""
    return [r.task for r in rows if r.option.available and not r.loaded]


class WarmupReport(QObject):
    """Follows the bridge's WARMUP command and the loads and failures within it."""

    def __init__(
        self, status: StatusBar, banner: ErrorBanner, to_load: Callable[[], list[str]]
    ) -> None:
        super().__init__(status)
        self.status = status
        self.banner = banner
        self._to_load = to_load  # the tasks a warm-up would load now
        self.running = False
        self._tasks: list[str] = []
        self._loaded = 0
        self._evicted: set[str] = set()  # loaded by this warm-up, then evicted for another
        self.failures: list[str] = []

    def busy_changed(self, key: str, busy: bool) -> None:
        if key != WARMUP:
            return
        if busy:
            self.running, self._loaded, self.failures = True, 0, []
            self._evicted = set()
            self._tasks = self._to_load()
            self._show_progress()
            return
        self.running = False
        if self.failures:
            failed = f"{len(self.failures)} of {models(len(self._tasks))}"
            self.status.end_progress(f"Warm-up: {failed} could not load", 8000)
        elif self._evicted:  # "5 models loaded" read wrong beside a table with 3 loaded
            again = f"{len(self._evicted)} evicted again"  # for room: the log says for which
            self.status.end_progress(f"Warm-up done: {models(self._loaded)} loaded, {again}")
        else:
            self.status.end_progress(f"Warm-up done: {models(self._loaded)} loaded")

    def event_logged(self, entry: LogEntry) -> None:
        if not self.running or entry.task not in self._tasks:
            return
        if entry.kind == "ModelLoaded":
            self._loaded += 1
            self._evicted.discard(entry.task)
            self._show_progress()
        elif entry.kind == "ModelEvicted":
            self._evicted.add(entry.task)
        elif entry.kind == "LoadFailed":
            self.failures.append(f"{entry.task}: {plain_reason(entry.reason, entry.task)}")
            n = len(self.failures)
            self.banner.show_error(f"Warm-up could not load {models(n)}", "\n".join(self.failures))
            self._show_progress()

    def _show_progress(self) -> None:
        done, total = self._loaded + len(self.failures), len(self._tasks)
        text = f"Warming up {models(total)}…" if not done else (
            f"Warming up {models(total)}… {done} of {total} done")  # fmt: skip
        self.status.show_progress(text, done, max(total, 1))


__all__ = [
    "WarmupReport",
    "tasks_to_warm",
]
