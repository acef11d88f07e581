"""Where the memory chart goes in the window, built just after the window first shows.

pyqtgraph and numpy take ~0.4 s to import: the window appears without waiting for them, and
the chart replaces a placeholder a moment later. Samples and events that arrive meanwhile are
kept and handed to the chart when it exists.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from .records import GpuActivity, LogEntry, MemorySample

DEFAULT_FPS = 4  # as gui.vram_chart's, which this module must not import early

if TYPE_CHECKING:
    from .vram_chart import VramChart


class ChartSlot(QWidget):
    """Holds a VramChart, or a placeholder until `build()` (or the first use of `chart`)."""

    #: The chart exists now (pyqtgraph is imported).
    chartBuilt = Signal()

    def __init__(self, parent: QWidget | None = None, fps: int = DEFAULT_FPS) -> None:
        super().__init__(parent)
        self.fps = fps
        self._chart: VramChart | None = None
        self._samples: deque[MemorySample] = deque(maxlen=10_000)
        self._events: list[LogEntry] = []
        self._task_order: list[str] = []
        self._device: str | None = None
        self._window_s = 60
        self._activity: GpuActivity | None = None
        self._placeholder = QLabel("Preparing the memory chart…", self)
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setObjectName("chartPlaceholder")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._placeholder)

    @property
    def built(self) -> bool:
        return self._chart is not None

    @property
    def chart(self) -> VramChart:
        """The chart, built now if it was not yet."""
        return self._chart if self._chart is not None else self.build()

    def build(self) -> VramChart:
        if self._chart is not None:
            return self._chart
        from .vram_chart import VramChart  # imports pyqtgraph and numpy

        chart = VramChart(parent=self, fps=self.fps)
        chart.set_task_order(self._task_order)
        chart.set_window(self._window_s)
        # In the order they came: a sample of the host tier sizes the parked models from the
        # park events before it.
        came: Iterable[MemorySample | LogEntry] = heapq.merge(
            self._samples, self._events, key=lambda item: item.at
        )
        for item in came:
            if isinstance(item, MemorySample):
                chart.add_sample(item)
            else:
                chart.add_event(item)
        if self._device:
            chart.set_device(self._device)
        chart.show_activity(self._activity)
        self._samples.clear()
        self._events.clear()
        layout = self.layout()
        assert layout is not None
        layout.replaceWidget(self._placeholder, chart)
        chart.show()  # a child added to a shown window stays hidden until shown
        self._placeholder.deleteLater()
        self._chart = chart
        self.chartBuilt.emit()
        return chart

    def add_sample(self, sample: MemorySample) -> None:
        if self._chart is not None:
            self._chart.add_sample(sample)
        else:
            self._samples.append(sample)

    def add_event(self, entry: LogEntry) -> None:
        if self._chart is not None:
            self._chart.add_event(entry)
        else:
            self._events.append(entry)

    def set_task_order(self, tasks: list[str]) -> None:
        self._task_order = list(tasks)
        if self._chart is not None:
            self._chart.set_task_order(tasks)

    def set_device(self, device: str) -> None:
        self._device = device
        if self._chart is not None:
            self._chart.set_device(device)

    @property
    def device(self) -> str:
        """The device the chart shows (the one chosen in its combo box, once built)."""
        return self._chart.device if self._chart is not None else self._device or ""

    @property
    def activity(self) -> GpuActivity | None:
        """What the chart's line about the GPU's other processes shows (or will, once built)."""
        return self._activity

    def show_activity(self, activity: GpuActivity | None) -> None:
        self._activity = activity
        if self._chart is not None:
            self._chart.show_activity(activity)

    def set_window(self, seconds: int) -> None:
        self._window_s = seconds
        if self._chart is not None:
            self._chart.set_window(seconds)


__all__ = ["ChartSlot"]
