"""The memory chart's pieces that are not its drawing loop: the controls, the plot widget, the
time axis, the marker symbols and the horizontal reference lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QWidget

from .memory_history import Marker
from .palette import ERROR_COLOR, MUTED_COLOR, OK_COLOR
from .records import MemorySample

WINDOWS = {"1 min": 60, "10 min": 600, "1 h": 3600}
LEFT_AXIS_WIDTH = 52  # px: "GiB" and ticks up to "1000"
SCALES = ("Auto", "Budget", "Whole device")

PARK_COLOR, SLEEP_COLOR = "#1f6fb2", "#7b4fa0"
MARKER_STYLE = {  # kind → (symbol, size, colour)
    "load": ("t1", 9, OK_COLOR),
    "evict": ("x", 12, ERROR_COLOR),
    "unload": ("t", 9, MUTED_COLOR),
    "fail": ("o", 9, ERROR_COLOR),
    "park": ("s", 8, PARK_COLOR),  # to host RAM: the residency tier
    "restore": ("t1", 9, PARK_COLOR),
    "sleep": ("d", 9, SLEEP_COLOR),  # a managed server gave its memory back
    "wake": ("t1", 9, SLEEP_COLOR),
}
#: How the legend writes each marker's symbol, and what it stands for.
MARKER_LEGEND = {"load": ("▲", "load"), "evict": ("✕", "eviction"), "unload": ("▼", "unload"),
                 "fail": ("●", "failure"), "park": ("■", "parked in RAM"),
                 "restore": ("▲", "restored"), "sleep": ("◆", "asleep"),
                 "wake": ("▲", "woken")}  # fmt: skip


class AgoAxis(pg.AxisItem):
    """A time axis in seconds or minutes before now: ``now``, ``30 s``, ``5 min``."""

    unit = "s"

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return ["now" if abs(v) < 1e-9 else f"{abs(v):g} {self.unit}" for v in values]


@dataclass
class ChartControls:
    """The row above the plot: the title, and which device, window and scale to show."""

    row: QHBoxLayout
    title: QLabel
    device_combo: QComboBox
    window_combo: QComboBox
    scale_combo: QComboBox
    pause_button: QToolButton


def build_controls(parent: QWidget) -> ChartControls:
    """The controls, not yet connected (the chart connects them)."""
    device_combo = QComboBox(parent)
    device_combo.setToolTip("Device to show")
    window_combo = QComboBox(parent)
    window_combo.addItems(list(WINDOWS))
    window_combo.setToolTip("How much history to show")
    scale_combo = QComboBox(parent)
    scale_combo.addItems(list(SCALES))
    scale_combo.setToolTip(
        "Budget: fit the models and their budget; Whole device: 0 to the device's total"
    )
    pause_button = QToolButton(parent)
    pause_button.setText("Pause")
    pause_button.setCheckable(True)
    pause_button.setToolTip("Hold the chart still to read it; samples are still kept")
    title = QLabel("Memory", parent)
    title.setObjectName("chartTitle")
    row = QHBoxLayout()
    row.addWidget(title)
    row.addStretch(1)
    for label, combo in (("Device", device_combo), ("Window", window_combo),
                         ("Scale", scale_combo)):  # fmt: skip
        row.addWidget(QLabel(label, parent))
        row.addWidget(combo)
    row.addWidget(pause_button)
    return ChartControls(row, title, device_combo, window_combo, scale_combo, pause_button)


def build_plot(parent: QWidget, axis: AgoAxis) -> pg.PlotWidget:
    """A plot on white with fixed axes, no mouse interaction, no menus and no grid."""
    plot = pg.PlotWidget(parent, background="w", axisItems={"bottom": axis})
    plot.setObjectName("vramPlot")
    item = plot.getPlotItem()
    item.setMenuEnabled(False)
    # pyqtgraph makes its context menus without a parent: give them the chart, so they go
    # when the chart goes instead of lingering as top-level widgets.
    for menu in (item.ctrlMenu, item.getViewBox().menu):
        if menu is not None:
            menu.setParent(parent, menu.windowFlags())
    item.hideButtons()
    # No grid: its alpha-blended lines cost more to paint than everything else together;
    # the budget, threshold and total lines are the references that matter.
    item.setMouseEnabled(x=False, y=False)
    item.getViewBox().disableAutoRange()
    item.setLabel("left", "GiB")
    # One width for every plot's left axis, so plots stacked in a column share their x.
    item.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
    for name in ("left", "bottom"):
        item.getAxis(name).setPen(pg.mkPen("#9aa0a6"))
        item.getAxis(name).setTextPen(pg.mkPen("#3c4043"))
    return plot


def marker_spots(
    markers: Sequence[Marker], t_ref: float, units: tuple[float, float]
) -> list[dict[str, object]]:
    """The scatter plot's spots for `markers`: x in units since `t_ref`, y in units of bytes."""
    x_unit, y_unit = units
    spots: list[dict[str, object]] = []
    for m in markers:
        symbol, size, color = MARKER_STYLE[m.kind]
        spots.append({"pos": ((m.at - t_ref) / x_unit, m.bytes_then / y_unit), "symbol": symbol,
                      "size": size, "brush": color, "pen": pg.mkPen(color, width=1),
                      "data": m.text})  # fmt: skip
    return spots


def reference_line(
    plot: pg.PlotWidget, color: str, style: Qt.PenStyle, label: str, *, below: bool = False
) -> pg.InfiniteLine:
    """A hidden horizontal line with its label at the left, above it (or `below`: for a line
    near the plot's top), added to `plot`."""
    anchor = (0, 0) if below else (0, 1)
    line = pg.InfiniteLine(
        angle=0,
        movable=False,
        pen=pg.mkPen(color, width=1, style=style),
        label=label,
        labelOpts={"position": 0.08, "color": color, "anchors": [anchor, anchor]},
    )
    line.setZValue(10)
    line.hide()
    plot.getPlotItem().addItem(line)
    return line


def whole_device_scale(scale: str, latest: MemorySample) -> bool:
    """Whether the y axis goes from 0 to the device's total (else to the models' budget)."""
    if scale == "Auto":
        # A budget far below the device (a small demo budget on a big card, or host RAM)
        # would be a sliver at the bottom of a whole-device scale.
        return latest.limit >= 0.25 * latest.total
    return scale == "Whole device"


def moved(old: tuple[float, float], new: tuple[float, float]) -> bool:
    """Whether the y range should change: only for a real change, so the axes stay fixed."""
    return abs(old[1] - new[1]) > 0.05 * max(old[1], 1e-9)


__all__ = ["MARKER_LEGEND", "MARKER_STYLE", "SCALES", "WINDOWS", "AgoAxis", "ChartControls",
           "build_controls", "build_plot", "marker_spots", "moved", "reference_line",
           "whole_device_scale"]  # fmt: skip
