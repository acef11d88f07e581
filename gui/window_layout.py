"""How the main window fits its screen and shares its space.

The first window is sized to the screen's available area (a laptop's 1366x768 too), a
remembered size is clamped to the screen it opens on, and the task table gets the height of
its rows (up to `TABLE_ROWS`) before the chart, the budget and the log share the rest.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSettings, QSize, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMainWindow, QSplitter, QTableView, QWidget

from . import settings as saved

#: The first window's largest size: a bigger one only spreads the same widgets thinner.
LARGEST = QSize(1600, 1000)
#: Room left on the screen for the window's frame and title bar.
FRAME = QSize(16, 40)
#: Rows the task table shows before it scrolls; the chart needs the height more after that.
TABLE_ROWS = 10
#: What the chart (with its controls and legend), the budget and the log keep at least when
#: the table takes its rows: on a 768-pixel screen the table shows about 6 rows, not 10.
BOTTOM_LEAST = 380
SPLITTERS = ("main", "bottom", "left")


def available_area(window: QWidget) -> QRect:
    """The screen area a window may use (without panels and docks)."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    return screen.availableGeometry()


def first_size(area: QRect) -> QSize:
    """The size of a window that was never opened before, on a screen of `area`."""
    return QSize(
        min(LARGEST.width(), area.width() - FRAME.width()),
        min(LARGEST.height(), area.height() - FRAME.height()),
    )


def clamp_to(window: QWidget, area: QRect) -> None:
    """Shrink and move `window` so that it lies inside `area` (a remembered size from a
    bigger screen, or a screen that has gone)."""
    width = min(window.width(), area.width() - FRAME.width())
    height = min(window.height(), area.height() - FRAME.height())
    if (width, height) != (window.width(), window.height()):
        window.resize(width, height)
    x = min(max(window.x(), area.left()), area.right() - width - FRAME.width() + 1)
    y = min(max(window.y(), area.top()), area.bottom() - height - FRAME.height() + 1)
    if (x, y) != (window.x(), window.y()):
        window.move(x, y)


def table_height(table: QTableView, rows: int) -> int:
    """Pixels that show the header and `rows` rows (at least 3, at most TABLE_ROWS)."""
    shown = max(3, min(rows, TABLE_ROWS))
    header = table.horizontalHeader().sizeHint().height()
    scroll = table.horizontalScrollBar().sizeHint().height()  # if the columns do not fit
    return header + shown * table.verticalHeader().defaultSectionSize() + scroll + 4


class WindowLayout:
    """Sizes the window and its splitters, and remembers them in `settings` (if given)."""

    def __init__(
        self,
        window: QMainWindow,
        splitters: dict[str, QSplitter],
        table: QTableView,
        settings: QSettings | None,
    ) -> None:
        self.window = window
        self.splitters = splitters
        self.table = table
        self.settings = settings
        self._splitters_pending = True  # the defaults need the window's real size: at show

    def restore(self) -> None:
        """The remembered geometry and splitters, else a size that fits the screen."""
        area = available_area(self.window)
        self.window.resize(first_size(area))
        self.window.move(area.center() - self.window.rect().center())
        if self.settings is None:
            return
        if (geometry := saved.layout_value(self.settings, "geometry")) is not None:
            self.window.restoreGeometry(geometry)
            clamp_to(self.window, area)
        restored = [name for name in SPLITTERS if self._restore_splitter(name)]
        self._splitters_pending = len(restored) < len(SPLITTERS)

    def _restore_splitter(self, name: str) -> bool:
        assert self.settings is not None
        state = saved.layout_value(self.settings, f"splitter/{name}")
        return state is not None and self.splitters[name].restoreState(state)

    def shown(self, rows: int) -> None:
        """The window is on screen with its real size: share it, unless it was remembered."""
        if self._splitters_pending:
            self._splitters_pending = False
            # After this event the layouts have given the splitters their real heights.
            QTimer.singleShot(0, self.window, lambda: self.share(rows))

    def share(self, rows: int) -> None:
        """The default sizes: the table its rows, the chart most of the rest."""
        main, bottom, left = (self.splitters[name] for name in SPLITTERS)
        height = main.height()
        least = table_height(self.table, 3)
        table = max(least, min(table_height(self.table, rows), height - BOTTOM_LEAST))
        main.setSizes([table, height - table])
        width = max(bottom.width(), 800)
        bottom.setSizes([int(width * 0.45), width - int(width * 0.45)])
        below = left.widget(1)
        budget = below.sizeHint().height() if below is not None else 120
        left.setSizes([max(left.height(), 2 * budget) - budget, budget])

    def save(self) -> None:
        if self.settings is None:
            return
        saved.save_layout_value(self.settings, "geometry", self.window.saveGeometry())
        for name, splitter in self.splitters.items():
            saved.save_layout_value(self.settings, f"splitter/{name}", splitter.saveState())
        self.settings.sync()


__all__ = ["BOTTOM_LEAST", "SPLITTERS", "TABLE_ROWS", "WindowLayout", "available_area",
           "clamp_to", "first_size", "table_height"]  # fmt: skip
