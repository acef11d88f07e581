"""Curves that scroll with time, and stacked per-task bands, for one plot of the memory chart.

Curves hold x in units since `t_ref` and are shifted left as time passes (one `setPos` of their
group), so a curve whose points did not change keeps its cached path: a flat band costs nothing
to redraw. The last point of a curve reaches far into the future, and the first far into the
past once older samples exist, so the points change only where the memory changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor

from .formatting import GIB
from .ring_buffer import step_points


class ScrollingSeries:
    """The curves of one plot that scroll with time, and what each was last given."""

    def __init__(self, plot: pg.PlotWidget, color_of: Callable[[str], str]) -> None:
        # Everything that scrolls with time, in one group: one setPos a frame moves it all.
        self.group = pg.ItemGroup()
        plot.getPlotItem().addItem(self.group)
        self.color_of = color_of
        self.units: tuple[float, float] = (1.0, float(GIB))  # x seconds/unit, y bytes/unit
        self.t_ref: float | None = None  # the time x = 0 of the curves' data
        self.window_s = 60
        self.drawn: dict[int, object] = {}  # item → what it was last given
        self.bands: dict[str, pg.PlotCurveItem] = {}
        self.shown_tasks: tuple[str, ...] = ()

    def start_frame(self, now: float, units_changed: bool) -> None:
        """Keep the data's origin, or move it to `now` (new units, or time gone backwards):
        then every curve is set again."""
        if units_changed or self.t_ref is None or now < self.t_ref:
            self.t_ref = now
            self.drawn.clear()

    def x_of(self, times: Any) -> Any:
        assert self.t_ref is not None
        return (times - self.t_ref) / self.units[0]

    def open_ends(self, now: float, older: bool) -> tuple[float | None, float]:
        """Where curves start (None: at their first sample) and end, in data x.

        Whole windows beyond the view on both sides, moved once a window has gone by: far
        enough that the view never sees an end, near enough for the painter's coordinates.
        """
        assert self.t_ref is not None
        width = self.window_s / self.units[0]
        bucket = (now - self.t_ref) / self.units[0] // width
        return ((bucket - 2) * width if older else None), (bucket + 2) * width

    def set_curve(
        self, curve: pg.PlotCurveItem, x: Any, y: Any, ends: tuple[float | None, float]
    ) -> None:
        """Give `curve` the step points of (x, y), unless it has them already."""
        px, py = step_points(x, y)
        if px.shape[0]:
            px = px.copy()
            px[-1] = ends[1]
            if ends[0] is not None:
                px[0] = ends[0]
        key = (px.tobytes(), py.tobytes())
        if self.drawn.get(id(curve)) != key:
            self.drawn[id(curve)] = key
            curve.setData(px, py, skipFiniteCheck=True)

    def scroll_to(self, now: float) -> None:
        assert self.t_ref is not None
        self.group.setPos(-(now - self.t_ref) / self.units[0], 0)

    def view_data(self, curve: pg.PlotCurveItem) -> tuple[Any, Any]:
        """A curve's points as the plot shows them: x in the axis' units before now, clipped
        to the window (for tests and tools; drawing never needs this)."""
        x, y = curve.getData()
        if x is None or y is None:
            return np.empty(0), np.empty(0)
        left = -self.window_s / self.units[0]
        return np.clip(x + self.group.pos().x(), left, 0.0), y

    def draw_stack(
        self, tasks: Sequence[str], stacked: Any, x: Any, ends: tuple[float | None, float]
    ) -> None:
        """One band per task, `stacked[:, i]` the top of task i's (in y units); others hidden."""
        for i, task in enumerate(tasks):
            band = self.band(task)
            self.set_curve(band, x, stacked[:, i], ends)
            z = 5 - i * 0.01  # lower bands over the higher (taller) ones
            if band.zValue() != z:
                band.setZValue(z)
            band.setVisible(True)
        for task, band in self.bands.items():
            if task not in tasks:
                band.setVisible(False)
        self.shown_tasks = tuple(tasks)

    def band(self, task: str) -> pg.PlotCurveItem:
        band = self.bands.get(task)
        if band is None:
            color = QColor(self.color_of(task))
            fill = color.lighter(115)  # opaque: cheaper to paint than a blended fill
            band = pg.PlotCurveItem(pen=pg.mkPen(color.darker(130), width=1), brush=fill,
                                    fillLevel=0.0, name=task)  # fmt: skip
            band.setParentItem(self.group)
            self.bands[task] = band
        return band


__all__ = ["ScrollingSeries"]
