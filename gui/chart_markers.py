"""The memory chart's event markers: a scatter plot that scrolls with the curves, one spot per
load, eviction, unload, failure, park, restore, sleep or wake, its tooltip saying what happened."""

from __future__ import annotations

from collections.abc import Sequence

import pyqtgraph as pg

from .chart_parts import marker_spots
from .chart_series import ScrollingSeries
from .memory_history import Marker


class MarkerLayer:
    """The markers of one plot; their spots are set again only when the markers or the units
    changed."""

    def __init__(self, series: ScrollingSeries) -> None:
        self._series = series
        self.item = pg.ScatterPlotItem(hoverable=True, tip=lambda x, y, data: data)
        self.item.setZValue(30)
        self.item.setParentItem(series.group)

    def draw(self, markers: Sequence[Marker]) -> None:
        series = self._series
        key = (tuple(markers), series.t_ref, series.units)
        if series.drawn.get(id(self.item)) == key:
            return
        series.drawn[id(self.item)] = key
        assert series.t_ref is not None
        self.item.setData(marker_spots(markers, series.t_ref, series.units))

    def scrolled(self) -> None:
        """After the group moved: the scatter plot culls its spots against the view rectangle
        it cached before, so without this a new marker at the right edge is drawn only once the
        view itself changes (a resize, another time window)."""
        self.item.viewTransformChanged()


__all__ = ["MarkerLayer"]
