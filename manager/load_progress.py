"""One load in flight as the loader's threads see it: its progress reports, rate-limited on their
way to the loop, and its cancel flag, which a blocking load meets at its next progress report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import LoadCancelledError

#: The fewest seconds between two progress events of one load (a new stage is always reported):
#: a loader may report every tensor it reads, and the panel repaints on each event.
MIN_INTERVAL_S = 0.1

Report = Callable[[float | None, str], None]


class LoadRun:
    """A load in flight: whether it was cancelled, and whether cancelling its coroutine stops it
    (the loader runs on the loop, as a server's does) or only its next progress report can (the
    loader blocks in a device worker, which asyncio cannot interrupt)."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.cancelled = threading.Event()
        self.on_loop = False

    def stop_if_cancelled(self) -> None:
        """Raise LoadCancelledError once the load was cancelled; any thread."""
        if self.cancelled.is_set():
            raise LoadCancelledError(self.task, "the load was cancelled")


class ProgressReports:
    """The `LoadContext.progress` of one load: callable from any thread, it passes on at most one
    report per `MIN_INTERVAL_S` (and every new stage, the first with a fraction, and the last),
    and in a blocking loader's thread it is where a cancelled load stops."""

    def __init__(
        self,
        run: LoadRun,
        send: Report,
        *,
        blocking: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run, self._send, self._blocking, self._clock = run, send, blocking, clock
        self._lock = threading.Lock()
        self._last: tuple[str, bool] | None = None  # the stage sent last, and if it had a fraction
        self._sent = 0.0

    def __call__(self, fraction: float | None, stage: str) -> None:
        if self._blocking:
            self._run.stop_if_cancelled()
        now = self._clock()
        kind = (stage, fraction is not None)
        with self._lock:
            done = fraction is not None and fraction >= 1.0
            if kind == self._last and not done and now - self._sent < MIN_INTERVAL_S:
                return
            self._last, self._sent = kind, now
        self._send(fraction, stage)


__all__ = ["MIN_INTERVAL_S", "LoadRun", "ProgressReports"]
