"""Garbage collection on the GUI thread only, in small steps.

Python's automatic collector runs in whichever thread happens to allocate, and a Qt object it
frees there is destroyed off the GUI thread (Qt warns "Timers cannot be stopped from another
thread", and can crash). Loads allocate a lot in the manager's workers, so the app turns the
automatic collector off and collects on a GUI-thread timer instead (as pyqtgraph's
GarbageCollector does). The timer is frequent, so each young collection stays small, and a
full collection runs at most every `full_every_s` (CPython also rations them, by its own
heuristic): a collection holds the GIL, and a long one is a stall of the window.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from collections.abc import Iterator

from PySide6.QtCore import QObject, QTimer

_pauses = 0  # collection_paused() blocks entered and not yet left


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No garbage collection at all inside (on any thread), e.g. while torch imports in the
    background: 126 collections on the GUI thread then cost 160-360 ms of its time, in passes
    of up to 28 ms, for garbage that the freeze after the import keeps out of later ones."""
    global _pauses
    enabled = gc.isenabled()
    gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if enabled and not _pauses:
            gc.enable()


class GuiThreadCollector(QObject):
    """While it runs, only its timer (on the GUI thread) collects garbage."""

    def __init__(
        self, parent: QObject | None = None, interval_ms: int = 20, full_every_s: float = 10.0
    ) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._full_every_s = full_every_s
        self._last_full = time.monotonic()
        self._switch_interval = sys.getswitchinterval()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)

    def start(self) -> None:
        """Turn automatic collection off, and collect on the timer; also tune thread switches."""
        gc.disable()
        self._switch_interval = sys.getswitchinterval()
        # Hand the GIL to the GUI thread sooner while a worker runs Python (imports at
        # start-up, a load's Python parts): the loop's p99 stall while torch imports fell from
        # ~19 to ~11 ms on 2 cores.
        sys.setswitchinterval(0.001)
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        gc.enable()
        sys.setswitchinterval(self._switch_interval)

    def check(self) -> None:
        """Collect the oldest generation whose count passed its threshold."""
        if _pauses:
            return
        counts = gc.get_count()
        generation = -1
        for g in range(3):
            if counts[g] <= self._thresholds[g]:
                break
            generation = g
        if generation == 2:
            if time.monotonic() - self._last_full < self._full_every_s:
                generation = 1
            else:
                self._last_full = time.monotonic()
        if generation >= 0:
            gc.collect(generation)


__all__ = ["GuiThreadCollector", "collection_paused"]
