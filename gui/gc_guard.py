"""Garbage collection on the GUI thread only.

Python's automatic collector runs in whichever thread happens to allocate, and a Qt object it
frees there is destroyed off the GUI thread (Qt warns "Timers cannot be stopped from another
thread", and can crash). Loads allocate a lot in the manager's workers, so the app turns the
automatic collector off and collects on a GUI-thread timer instead (as pyqtgraph's
GarbageCollector does), with the same thresholds.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadCollector(QObject):
    """While it lives and runs, only its timer (on the GUI thread) collects garbage."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)

    def start(self) -> None:
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        gc.enable()

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds."""
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self._thresholds[generation]:
                return
            gc.collect(generation)


__all__ = ["GuiThreadCollector"]
