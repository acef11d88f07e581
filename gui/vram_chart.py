"""The live memory chart: per device, memory over time, the models' stacked bands, the budget.

Samples go into a `MemoryHistory` as they arrive (10 Hz); a timer redraws from it, at most 4
times a second, with at most one `setData` per curve, fixed axes and width-1 pens (pyqtgraph's
fast path). The redraw interval grows with the window: at 1 h a pixel spans seconds.
The scrolling curves and bands are `chart_series`'s, the markers `chart_markers`'s; the host-RAM
tier's thin plot under the device's is `chart_host_tier`'s, drawn in the same frame.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from .chart_host_tier import HostTierPlot
from .chart_legend import ActivityLine, ChartLegend, summary_text
from .chart_markers import MarkerLayer
from .chart_parts import (
    MARKER_STYLE,
    SCALES,
    WINDOWS,
    AgoAxis,
    build_controls,
    build_plot,
    moved,
    reference_line,
    whole_device_scale,
)
from .chart_series import ScrollingSeries
from .formatting import GIB, MIB
from .memory_history import MANAGER, TIME, USED, DeviceHistory, Marker, MemoryHistory
from .palette import ERROR_COLOR, MUTED_COLOR, TEXT_COLOR, WARNING_COLOR, task_color
from .records import GpuActivity, LogEntry, MemorySample
from .ring_buffer import decimate_max

USED_COLOR, TOTAL_COLOR, THRESHOLD_COLOR, BUDGET_COLOR = (
    TEXT_COLOR, MUTED_COLOR, WARNING_COLOR, ERROR_COLOR,
)  # fmt: skip
#: Frames a second at most (samples still come at 10 Hz). On a 1-minute window a frame moves
#: the curves ~4 px, and drawing costs ~1.5% of a core; 10 fps would cost 2.5 times that for
#: a memory chart that nobody reads at 10 Hz.
DEFAULT_FPS = 4
MAX_POINTS = 1500  # per curve; more than the plot has pixels across


class VramChart(QWidget):
    """Memory of one device over the last minute, ten minutes or hour."""

    def __init__(
        self,
        history: MemoryHistory | None = None,
        parent: QWidget | None = None,
        fps: int = DEFAULT_FPS,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("vramChart")
        self.history = history or MemoryHistory()
        self.fps = fps
        self.window_s = 60
        self.task_order: list[str] = []
        self._device = ""
        self._y_range: tuple[float, float] | None = None
        self.frames = 0
        self._build_controls()
        self._build_plot()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        self._restart_timer()

    # ----------------------------------------------------------------- construction

    def _build_controls(self) -> None:
        controls = build_controls(self)
        self.title, self.pause_button = controls.title, controls.pause_button
        self.device_combo = controls.device_combo
        self.device_combo.currentIndexChanged.connect(self._on_device_chosen)
        self.window_combo = controls.window_combo
        self.window_combo.currentTextChanged.connect(lambda t: self.set_window(WINDOWS[t]))
        self.scale_combo = controls.scale_combo
        self.scale_combo.currentTextChanged.connect(lambda _t: self._invalidate_range())
        self.pause_button.toggled.connect(self._on_pause)
        self.summary = QLabel("waiting for the first sample…", self)
        self.summary.setObjectName("chartSummary")
        # Its text must not set the window's minimum width; it is elided by the layout.
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.legend = ChartLegend(self)
        self.activity = ActivityLine(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(3)
        layout.addLayout(controls.row)
        for widget in (self.summary, self.legend, self.activity):
            layout.addWidget(widget)

    def _build_plot(self) -> None:
        self.axis = AgoAxis(orientation="bottom")
        self.plot = build_plot(self, self.axis)
        self.series = ScrollingSeries(self.plot, self._color)
        self.bands = self.series.bands
        self.scrolling = self.series.group
        self.used_curve = pg.PlotCurveItem(pen=pg.mkPen(USED_COLOR, width=1), name="used")
        self.used_curve.setZValue(20)
        self.used_curve.setParentItem(self.scrolling)
        dash, solid = Qt.PenStyle.DashLine, Qt.PenStyle.SolidLine
        self.lines = {
            "total": reference_line(self.plot, TOTAL_COLOR, solid, "total"),
            "threshold": reference_line(self.plot, THRESHOLD_COLOR, dash, "offload threshold"),
            "budget": reference_line(self.plot, BUDGET_COLOR, dash, "memory budget"),
        }
        self._marker_layer = MarkerLayer(self.series)
        self.markers = self._marker_layer.item
        self.host_tier = HostTierPlot(self._color, self)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.host_tier)

    # ----------------------------------------------------------------- inputs

    def add_sample(self, sample: MemorySample) -> None:
        """Store a sample (drawn at the next frame)."""
        self.history.add_sample(sample)
        if self.device_combo.findText(sample.device) < 0:
            self._add_device(sample.device)

    def add_event(self, entry: LogEntry) -> None:
        """Store a marker for a load, eviction, unload or failure."""
        self.history.add_event(entry)

    def show_activity(self, activity: GpuActivity | None) -> None:
        """Show the device's utilisation and its other processes (None: nothing to say)."""
        self.activity.show_activity(activity)

    def set_task_order(self, tasks: list[str]) -> None:
        """Stack the bands in this order (the config's)."""
        self.task_order = list(tasks)

    def set_window(self, seconds: int) -> None:
        """Show the last `seconds` (60, 600 or 3600)."""
        self.window_s = seconds
        label = next((k for k, v in WINDOWS.items() if v == seconds), None)
        if label and self.window_combo.currentText() != label:
            self.window_combo.setCurrentText(label)
        self._invalidate_range()
        self._restart_timer()

    def set_device(self, device: str) -> None:
        if self.device_combo.findText(device) < 0:
            self._add_device(device)
        self.device_combo.setCurrentText(device)

    @property
    def device(self) -> str:
        return self._device

    def _add_device(self, device: str) -> None:
        # Keep CUDA devices first: the one a person came to watch.
        names = [self.device_combo.itemText(i) for i in range(self.device_combo.count())]
        names.append(device)
        names.sort(key=lambda d: (not d.startswith("cuda"), d))
        self.device_combo.insertItem(names.index(device), device)
        if not self._device or (device.startswith("cuda") and not self._device.startswith("cuda")):
            self.device_combo.setCurrentText(device)

    def _on_device_chosen(self, _index: int) -> None:
        self._device = self.device_combo.currentText()
        self._invalidate_range()
        self.redraw()

    def _invalidate_range(self) -> None:
        self._y_range = None

    @property
    def paused(self) -> bool:
        return self.pause_button.isChecked()

    def set_paused(self, paused: bool) -> None:
        """Hold the picture still (samples are still kept), or go live again."""
        self.pause_button.setChecked(paused)

    def _on_pause(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        if paused:
            self._timer.stop()
        else:
            self._restart_timer()
            self.redraw()

    def _restart_timer(self) -> None:
        if self.paused:
            return
        width = max(200, self.plot.width()) if hasattr(self, "plot") else 800
        seconds_per_pixel = self.window_s / width
        interval = max(1000 / self.fps, min(2000.0, 1000 * seconds_per_pixel))
        self._timer.start(int(interval))

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._restart_timer()

    # ----------------------------------------------------------------- drawing

    def redraw(self, now: float | None = None) -> None:
        """Draw the current window from the history (the timer calls this)."""
        history = self.history.devices.get(self._device)
        if history is None or history.latest is None or (now is None and not self.isVisible()):
            return
        now = time.time() if now is None else now
        t0 = now - self.window_s
        window = history.since(t0)
        older = window.shape[0] < len(history.ring)  # samples before the window exist
        rows = decimate_max(window, MAX_POINTS)
        peak = float(window[:, MANAGER].max()) if window.shape[0] else 0.0
        series = self.series
        series.window_s = self.window_s
        series.start_frame(now, self._update_range(history, peak))
        x, y_unit = series.x_of(rows[:, TIME]), series.units[1]
        ends = series.open_ends(now, older)
        series.set_curve(self.used_curve, x, rows[:, USED] / y_unit, ends)
        self._draw_bands(history, rows, x, ends)
        markers = self.history.markers_since(history.device, t0)
        self._marker_layer.draw(markers)
        series.scroll_to(now)
        self._marker_layer.scrolled()
        self._update_summary(history)
        self._update_legend(history, markers)
        self.host_tier.redraw(
            self.history.host_tier, now, self.window_s, series.units[0], self.task_order
        )
        self.frames += 1

    def view_data(self, curve: pg.PlotCurveItem) -> tuple[Any, Any]:
        """A curve's points as the chart shows them: x in the axis' units before now, clipped
        to the window (for tests and tools; drawing never needs this)."""
        return self.series.view_data(curve)

    def _draw_bands(
        self, history: DeviceHistory, rows: Any, x: Any, ends: tuple[float | None, float]
    ) -> None:
        tasks = [t for t in self._stack_order(history) if rows[:, history.task_columns[t]].any()]
        columns = [history.task_columns[t] for t in tasks]
        stacked = np.cumsum(rows[:, columns], axis=1) / self.series.units[1] if columns else None
        self.series.draw_stack(tasks, stacked, x, ends)

    def _stack_order(self, history: DeviceHistory) -> list[str]:
        known = [t for t in self.task_order if t in history.task_columns]
        return known + [t for t in history.task_columns if t not in known]

    def _color(self, task: str) -> str:
        return task_color(task, self.task_order)

    def _update_range(self, history: DeviceHistory, peak: float) -> bool:
        """Fix the axes for the latest sample; True when the units changed."""
        latest = history.latest
        assert latest is not None
        whole = whole_device_scale(self.scale_combo.currentText(), latest)
        top = latest.total * 1.04 if whole else max(latest.limit, peak, 1.0) * 1.3
        y_unit = float(GIB) if top >= 2 * GIB else float(MIB)
        x_unit = 1.0 if self.window_s <= 120 else 60.0
        wanted = (0.0, top / y_unit)
        units_changed = (x_unit, y_unit) != self.series.units
        if units_changed or self._y_range is None or moved(self._y_range, wanted):
            self.series.units = (x_unit, y_unit)
            self._y_range = wanted
            item = self.plot.getPlotItem()
            item.setYRange(*wanted, padding=0)
            item.setXRange(-self.window_s / x_unit, 0, padding=0)
            item.setLabel("left", "GiB" if y_unit == GIB else "MiB")
            self.axis.unit = "s" if x_unit == 1.0 else "min"
        self._place_lines(latest, whole)
        return units_changed

    def _place_lines(self, latest: MemorySample, whole: bool) -> None:
        y_unit = self.series.units[1]
        values = {"total": latest.total, "threshold": latest.threshold,
                  "budget": latest.memory_budget}  # fmt: skip
        top = self._y_range[1] * y_unit if self._y_range else 0
        key = (tuple(values.values()), top, y_unit, whole or latest.used <= top)
        drawn = self.series.drawn
        if drawn.get(id(self.lines)) == key:
            return
        drawn[id(self.lines)] = key
        for name, line in self.lines.items():
            value = values[name]
            visible = value is not None and value <= top
            line.setVisible(visible)
            if visible:
                assert value is not None
                line.setPos(value / y_unit)
        self.used_curve.setVisible(key[-1])

    def _update_summary(self, history: DeviceHistory) -> None:
        latest = history.latest
        assert latest is not None
        drawn = self.series.drawn
        if drawn.get(id(self.summary)) is latest:
            return
        drawn[id(self.summary)] = latest
        self.summary.setText(summary_text(history.device, latest))

    def _update_legend(self, history: DeviceHistory, markers: list[Marker]) -> None:
        """Name what is drawn: the bands shown and the tasks with a marker in the window (a
        model loaded and gone between two samples has no band), and the lines in the scale."""
        marked = {m.task for m in markers if m.task}
        shown = set(self.series.shown_tasks) | marked
        tasks = [t for t in self._stack_order(history) if t in shown]
        tasks += sorted(marked.difference(tasks))
        lines = [
            (USED_COLOR, "used (all processes)", self.used_curve),
            (THRESHOLD_COLOR, "offload threshold", self.lines["threshold"]),
            (BUDGET_COLOR, "memory budget", self.lines["budget"]),
            (TOTAL_COLOR, "total", self.lines["total"]),
        ]
        self.legend.show_entries(
            [(self._color(t), t) for t in tasks],
            [(color, text) for color, text, item in lines if item.isVisible()],
            {m.kind for m in markers},
        )


__all__ = ["MARKER_STYLE", "SCALES", "WINDOWS", "AgoAxis", "VramChart"]
