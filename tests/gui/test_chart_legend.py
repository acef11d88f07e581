"""The chart's markers on screen, its legend, and the line about the GPU's other processes."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor

from tests.gui.test_vram_chart import GIB, MIB, sample
from vramdeck.gui.chart_legend import NO_NVML, activity_text
from vramdeck.gui.palette import ERROR_COLOR, OK_COLOR
from vramdeck.gui.records import GpuActivity, GpuProcessInfo, LogEntry
from vramdeck.gui.vram_chart import VramChart


@pytest.fixture
def chart(qtbot) -> VramChart:
    chart = VramChart(fps=10)
    qtbot.addWidget(chart)
    chart.resize(900, 400)
    chart.show()
    chart.set_task_order(["alpha", "beta"])
    return chart


def pixels_of(chart: VramChart, color: str) -> int:
    """How many pixels of the plot, as painted now, are exactly `color`."""
    image = chart.plot.grab().toImage()
    rgb = QColor(color).rgb()
    return sum(image.pixel(x, y) == rgb for x in range(image.width())
               for y in range(image.height()))  # fmt: skip


def test_a_marker_is_painted_in_the_frame_after_its_event(chart: VramChart, qtbot) -> None:
    chart.set_paused(True)  # only the frames drawn below
    for i in range(50):
        chart.add_sample(sample(1000 + i / 10, {"alpha": GIB}))
    chart.redraw(now=1005.0)
    chart.plot.grab()  # painted once: the scatter plot has seen the view as it was
    for i in range(50, 100):
        chart.add_sample(sample(1000 + i / 10, {"alpha": GIB}))
    chart.add_event(LogEntry(at=1009.5, kind="ModelLoaded", task="alpha", device="cuda:0",
                             bytes=GIB))  # fmt: skip
    chart.redraw(now=1010.0)  # the curves scrolled by 5 s; the new marker is near the edge
    assert pixels_of(chart, OK_COLOR) > 10


def test_the_legend_names_tasks_seen_only_by_their_markers_and_every_symbol(
    chart: VramChart,
) -> None:
    chart.add_sample(sample(1000.0, {"alpha": GIB}))
    # beta loaded and went between two samples: no band, but two markers.
    for at, kind in ((1000.2, "ModelLoaded"), (1000.25, "ModelUnloaded")):
        chart.add_event(LogEntry(at=at, kind=kind, task="beta", device="cuda:0", bytes=MIB))
    chart.add_sample(sample(1000.3, {"alpha": GIB}))
    chart.redraw(now=1001.0)
    text = chart.legend.text()
    assert "alpha" in text and "beta" in text
    assert not chart.bands.get("beta") or not chart.bands["beta"].isVisible()
    for symbol, word in (("▲", "load"), ("✕", "eviction"), ("▼", "unload"), ("●", "failure")):
        assert f"{symbol}</span>&nbsp;{word}" in text
    assert ERROR_COLOR in text and OK_COLOR in text


def test_the_tiers_symbols_are_explained_only_while_one_is_in_the_window(
    chart: VramChart,
) -> None:
    chart.add_sample(sample(1000.0, {"alpha": GIB}))
    chart.redraw(now=1001.0)
    assert "parked in RAM" not in chart.legend.text()
    assert "woken" not in chart.legend.text() and "eviction" in chart.legend.text()
    chart.add_event(LogEntry(at=1001.5, kind="ModelParked", task="alpha", device="cuda:0",
                             bytes=GIB))  # fmt: skip
    chart.add_sample(sample(1002.0, {}))
    chart.redraw(now=1002.0)
    assert "parked in RAM" in chart.legend.text() and "woken" not in chart.legend.text()


def test_activity_names_the_largest_other_processes_and_the_utilisation() -> None:
    processes = tuple(GpuProcessInfo(100 + i, f"job{i}", (i + 1) * 100 * MIB) for i in range(5))
    text, tip = activity_text(GpuActivity("cuda:0", True, 42, processes))
    assert text.startswith("cuda:0 utilisation 42% · other processes: job4 (PID 104) 500 MiB")
    assert text.endswith("and 2 more")
    assert tip.count("\n") == 5 and "job0 (PID 100) 100 MiB" in tip
    assert activity_text(GpuActivity("cuda:0", True, None))[0] == (
        "cuda:0 utilisation not reported · no other processes on it"
    )
    unknown = GpuActivity("cuda:0", True, 5, (GpuProcessInfo(7, "x", None),))
    assert "x (PID 7) size unknown" in activity_text(unknown)[0]
    assert activity_text(GpuActivity("cpu", False))[0] == NO_NVML


def test_the_chart_shows_the_activity_line_only_when_there_is_something_to_say(
    chart: VramChart,
) -> None:
    assert not chart.activity.isVisible()
    chart.show_activity(GpuActivity("cuda:0", False))
    assert chart.activity.isVisible() and chart.activity.text() == NO_NVML
    chart.show_activity(None)
    assert not chart.activity.isVisible()
