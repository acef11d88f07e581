"""The host-RAM tier under the device plot: a thin plot of what parked models hold in host RAM
over the same window, stacked per task in the tasks' colours, against the tier's budget; a line
above it says the figures in words. While the tier is off (no GPU: parking means nothing where
the device is host RAM) the chart shows none of it: the budget legend says once that it is off
and why, beside the budgets (gui/budget_legend.py).

It draws from `MemoryHistory.host_tier`, which the host's samples fill (the bridge reads the
tier once a sampling tick); drawing reads nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from .chart_parts import PARK_COLOR, AgoAxis, build_plot, moved, reference_line
from .chart_series import ScrollingSeries
from .formatting import GIB, MIB, fmt_bytes
from .memory_history import PARKED, TIER_BUDGET, TIME, HostTierHistory
from .records import HostTierInfo
from .ring_buffer import decimate_max

#: The plot's height: a band to read at a glance, not a second chart.
PLOT_HEIGHT = 78
TIER_TIP = (
    "Evicted models are parked in host RAM when the tier has room, and come back in a fraction "
    "of a load.\nBands: what each parked model holds there; line: the tier's own count; "
    "dashed: its budget (inference.host_cache_gb)."
)
MAX_POINTS = 1500  # per curve, as the device plot's


class HostTierPlot(QWidget):
    """The host-RAM tier's band and budget line, and its line of text; hidden until the first
    reading of the tier arrives, and while the tier is off."""

    def __init__(self, color_of: Callable[[str], str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hostTierPlot")
        self.summary = QLabel(self)
        self.summary.setObjectName("hostTierSummary")
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.plot = build_plot(self, AgoAxis(orientation="bottom"))
        item = self.plot.getPlotItem()
        item.hideAxis("bottom")  # the device plot's time axis above serves both
        item.setContentsMargins(0, 2, 0, 6)  # room for the half of the "0" below the axis
        self.plot.setFixedHeight(PLOT_HEIGHT)
        self.setToolTip(TIER_TIP)
        self.series = ScrollingSeries(self.plot, color_of)
        self.bands = self.series.bands
        # The tier's own count, a line over the tasks' bands.
        self.parked_curve = pg.PlotCurveItem(pen=pg.mkPen(PARK_COLOR, width=1), name="parked")
        self.parked_curve.setZValue(20)
        self.parked_curve.setParentItem(self.series.group)
        self.budget_line = reference_line(
            self.plot, PARK_COLOR, Qt.PenStyle.DashLine, "budget", below=True
        )
        self._y_range: tuple[float, float] | None = None
        self._shown: tuple[bool, str] | None = None  # (on, text) last shown
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addWidget(self.summary)
        layout.addWidget(self.plot)
        self.hide()

    def redraw(
        self, history: HostTierHistory, now: float, window_s: int, x_unit: float,
        task_order: Sequence[str],
    ) -> None:  # fmt: skip
        """Draw the window ending `now` (x in `x_unit` seconds, as the device plot's)."""
        tier = history.tier
        self._show_state(tier, history)
        if tier is None or not tier.enabled or len(history.ring) == 0:
            return
        window = history.since(now - window_s)
        if window.shape[0] == 0:  # nothing sampled in the window: the last row still holds
            last = history.ring.last()
            assert last is not None
            window = last[None, :]
        older = window.shape[0] < len(history.ring)
        rows = decimate_max(window, MAX_POINTS)
        series = self.series
        series.window_s = window_s
        series.start_frame(now, self._update_range(tier, float(window[:, PARKED].max()), x_unit))
        x, y_unit = series.x_of(rows[:, TIME]), series.units[1]
        ends = series.open_ends(now, older)
        series.set_curve(self.parked_curve, x, rows[:, PARKED] / y_unit, ends)
        self._draw_bands(history, rows, x, ends, task_order)
        series.scroll_to(now)
        self._place_budget(float(rows[-1, TIER_BUDGET]))

    def view_data(self, curve: Any) -> tuple[Any, Any]:
        """A curve's points as drawn (for tests and tools)."""
        return self.series.view_data(curve)

    def _draw_bands(
        self, history: HostTierHistory, rows: Any, x: Any, ends: tuple[float | None, float],
        task_order: Sequence[str],
    ) -> None:  # fmt: skip
        columns = history.task_columns
        order = [t for t in task_order if t in columns] + [
            t for t in columns if t not in task_order
        ]
        tasks = [t for t in order if rows[:, columns[t]].any()]
        if not tasks:
            self.series.draw_stack([], None, x, ends)
            return
        stacked = np.cumsum(rows[:, [columns[t] for t in tasks]], axis=1)
        # The tier's own count is the truth: the events' sizes never draw above it.
        stacked = np.minimum(stacked, rows[:, PARKED : PARKED + 1]) / self.series.units[1]
        self.series.draw_stack(tasks, stacked, x, ends)

    def _update_range(self, tier: HostTierInfo, peak: float, x_unit: float) -> bool:
        """Fix the axes: 0 to a little over the budget; True when the units changed."""
        top = max(float(tier.budget), peak, 1.0) * 1.15
        y_unit = float(GIB) if top >= 2 * GIB else float(MIB)
        wanted = (0.0, top / y_unit)
        units_changed = (x_unit, y_unit) != self.series.units
        if units_changed or self._y_range is None or moved(self._y_range, wanted):
            self.series.units = (x_unit, y_unit)
            self._y_range = wanted
            item = self.plot.getPlotItem()
            item.setYRange(*wanted, padding=0)
            item.setXRange(-self.series.window_s / x_unit, 0, padding=0)
            item.setLabel("left", "GiB" if y_unit == GIB else "MiB")
        return units_changed

    def _place_budget(self, budget: float) -> None:
        key = (budget, self.series.units)
        if self.series.drawn.get(id(self.budget_line)) == key:
            return
        self.series.drawn[id(self.budget_line)] = key
        top = budget / self.series.units[1]
        self.budget_line.setPos(top)
        self.budget_line.setVisible(budget > 0)
        # Two ticks, 0 and the budget: more would crowd a plot this thin.
        ticks = [(0.0, "0"), (top, f"{top:.3g}")] if budget > 0 else [(0.0, "0")]
        self.plot.getPlotItem().getAxis("left").setTicks([ticks, []])

    def _show_state(self, tier: HostTierInfo | None, history: HostTierHistory) -> None:
        """The line of text and the plot, shown only while the tier is on: the budget legend
        says why it is off, and the chart keeps the height for the device's plot."""
        if tier is None:
            return  # not read yet: stays hidden
        shown = (tier.enabled, tier_text(tier, history))
        if shown == self._shown:
            return
        self._shown = shown
        self.summary.setText(shown[1])
        self.setVisible(tier.enabled)


def tier_text(tier: HostTierInfo, history: HostTierHistory) -> str:
    """``host RAM tier: 4 GiB parked of 16 GiB budget · alpha 4 GiB`` ("" while it is off)."""
    if not tier.enabled:
        return ""
    if not tier.parked and not tier.used:
        return (
            f"host RAM tier: nothing parked of {fmt_bytes(tier.budget)} budget "
            "(an evicted model is parked here when it fits)"
        )
    head = f"host RAM tier: {fmt_bytes(tier.used)} parked of {fmt_bytes(tier.budget)} budget"
    last = history.ring.last()
    sizes = []
    for task in tier.parked:
        column = history.task_columns.get(task)
        held = int(last[column]) if last is not None and column is not None else 0
        sizes.append(f"{task} {fmt_bytes(held)}" if held else task)
    return f"{head} · {', '.join(sizes)}"


__all__ = ["PLOT_HEIGHT", "HostTierPlot", "tier_text"]
