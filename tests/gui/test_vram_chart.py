"""The chart's data after samples, read from its curves (not its pixels)."""

from __future__ import annotations

import pytest

from vramdeck.gui.memory_history import MemoryHistory
from vramdeck.gui.records import LogEntry, MemorySample
from vramdeck.gui.vram_chart import MAX_POINTS, VramChart

GIB = 1024**3
MIB = 1024**2


def sample(
    t: float,
    per_task: dict[str, int],
    *,
    used: int = 3 * GIB,
    total: int = 8 * GIB,
    limit: int = 6 * GIB,
    budget: int | None = None,
    device: str = "cuda:0",
) -> MemorySample:
    return MemorySample(device=device, at=t, used=used, total=total, limit=limit,
                        threshold=int(0.9 * total), memory_budget=budget,
                        manager=sum(per_task.values()), per_task=per_task)  # fmt: skip


@pytest.fixture
def chart(qtbot):
    chart = VramChart(fps=10)
    qtbot.addWidget(chart)
    chart.resize(900, 400)
    chart.show()
    chart.set_task_order(["alpha", "beta"])
    return chart


def test_curves_hold_the_samples_of_the_window(chart: VramChart) -> None:
    for i in range(100):  # 10 s at 10 Hz
        chart.add_sample(sample(1000 + i / 10, {"alpha": 1 * GIB, "beta": GIB // 2},
                                used=2 * GIB + i * MIB))  # fmt: skip
    chart.redraw(now=1010.0)
    x, y = chart.view_data(chart.used_curve)
    assert len(x) == 100
    assert x[0] == pytest.approx(-10.0)  # the first sample: nothing is drawn before it
    assert x[-2] == pytest.approx(-0.2) and x[-1] == 0  # the last one reaches now
    assert y[0] == pytest.approx(2.0) and y[-1] == pytest.approx(2 + 99 / 1024)
    # Stacked in config order: alpha at the bottom, beta on top of it. Flat: two points each.
    assert chart.view_data(chart.bands["alpha"])[1] == pytest.approx([1.0, 1.0])
    assert chart.view_data(chart.bands["beta"])[1] == pytest.approx([1.5, 1.5])
    # The device's lines: whole-device scale because the budget is a large share of it.
    assert chart.lines["total"].value() == pytest.approx(8.0)
    assert chart.lines["threshold"].value() == pytest.approx(7.2)
    assert not chart.lines["budget"].isVisible()  # no memory_budget_gb in this config
    assert chart.plot.getPlotItem().viewRange()[1] == pytest.approx([0, 8 * 1.04])


def test_window_drops_old_samples(chart: VramChart) -> None:
    for i in range(1200):  # two minutes, a different value each time
        chart.add_sample(sample(1000 + i / 10, {"alpha": GIB}, used=i * MIB))
    chart.redraw(now=1120.0)
    x, y = chart.view_data(chart.used_curve)
    assert len(x) == 600 and x[0] == -60.0  # older samples exist: the curve starts at the edge
    assert y[0] == pytest.approx(600 / 1024)  # the sample of 60 s ago


def test_a_flat_curve_is_not_set_again(chart: VramChart) -> None:
    for i in range(50):
        chart.add_sample(sample(1000 + i / 10, {"alpha": GIB}))
    chart.redraw(now=1005.0)
    band = chart.bands["alpha"]
    path_before = band.getData()[0].copy()
    chart.add_sample(sample(1005.0, {"alpha": GIB}))
    chart.redraw(now=1005.1)
    assert (band.getData()[0] == path_before).all()  # only moved, not rebuilt
    assert chart.view_data(band)[0] == pytest.approx([-5.1, 0.0])


def test_small_budget_scales_to_the_models_and_hides_the_device_line(chart: VramChart) -> None:
    for i in range(20):
        chart.add_sample(sample(1000 + i / 10, {"alpha": 80 * MIB}, used=10 * GIB, total=24 * GIB,
                                limit=164 * MIB, budget=164 * MIB, device="cpu"))  # fmt: skip
    chart.set_device("cpu")
    chart.redraw(now=1002.0)
    assert chart.plot.getPlotItem().getAxis("left").labelText == "MiB"
    assert chart.lines["budget"].isVisible()
    assert chart.lines["budget"].value() == pytest.approx(164)
    assert not chart.used_curve.isVisible()  # 10 GiB would be far off this scale
    assert chart.view_data(chart.bands["alpha"])[1][-1] == pytest.approx(80)
    chart.scale_combo.setCurrentText("Whole device")
    chart.redraw(now=1002.0)
    assert chart.used_curve.isVisible()
    assert chart.plot.getPlotItem().getAxis("left").labelText == "GiB"


def test_an_hour_of_history_is_drawn_with_few_points_and_keeps_peaks(chart: VramChart) -> None:
    n = 36_000  # one hour at 10 Hz
    for i in range(n):
        per_task = {"alpha": 3 * GIB if i == 20_000 else GIB}  # one sample-long spike
        chart.add_sample(sample(i / 10, per_task))
    chart.set_window(3600)
    chart.redraw(now=n / 10)
    x, y = chart.view_data(chart.bands["alpha"])
    assert len(x) <= MAX_POINTS
    assert y.max() == pytest.approx(3.0)
    assert x.min() >= -60.0  # minutes on the axis for an hour


def test_markers_show_loads_and_evictions_with_tooltips(chart: VramChart) -> None:
    chart.add_sample(sample(1000.0, {}))
    chart.add_event(LogEntry(at=1000.5, kind="ModelLoaded", task="alpha", model="small",
                             device="cuda:0", bytes=GIB, duration_s=0.4))  # fmt: skip
    chart.add_event(LogEntry(at=1001.0, kind="ModelEvicted", task="alpha", model="small",
                             device="cuda:0", bytes=GIB, duration_s=0.1,
                             reason="room for beta", severity="eviction"))  # fmt: skip
    chart.add_event(LogEntry(at=1001.2, kind="SelectionChanged", task="alpha"))  # no marker
    chart.redraw(now=1002.0)
    points = chart.markers.points()
    assert len(points) == 2
    assert [p.pos().y() for p in points] == pytest.approx([1.0, 1.0])  # GiB, held then
    shift = chart.scrolling.pos().x()
    assert [p.pos().x() + shift for p in points] == pytest.approx([-1.5, -1.0])
    assert "Evicted: alpha" in points[1].data() and "room for beta" in points[1].data()


def test_the_timer_redraws_while_shown(chart: VramChart, qtbot) -> None:
    import time

    chart.add_sample(sample(time.time(), {"alpha": GIB}))
    qtbot.waitUntil(lambda: chart.frames >= 2, timeout=3000)


def test_history_keeps_one_ring_per_device() -> None:
    history = MemoryHistory(history_s=10, rate_hz=10)
    history.add_sample(sample(1.0, {"a": 1}, device="cuda:0"))
    history.add_sample(sample(1.0, {"b": 2}, device="cuda:1"))
    assert set(history.devices) == {"cuda:0", "cuda:1"}
    assert history.capacity == 110
    assert history.devices["cuda:1"].task_columns == {"b": 3}


def test_hovering_a_marker_says_what_happened(chart: VramChart, qtbot) -> None:
    from PySide6.QtTest import QTest

    chart.set_paused(True)  # only the redraws below, at their fixed times
    assert chart.pause_button.text() == "Resume"
    chart.add_sample(sample(1000.0, {"alpha": GIB}))
    chart.add_event(LogEntry(at=1001.0, kind="ModelEvicted", task="alpha", model="small",
                             device="cuda:0", bytes=GIB, duration_s=0.1,
                             reason="room for beta", severity="eviction"))  # fmt: skip
    chart.redraw(now=1003.0)
    qtbot.wait(50)  # the scene takes the new positions
    point = chart.markers.points()[0]
    where = chart.plot.mapFromScene(chart.markers.mapToScene(point.pos()))
    QTest.mouseMove(chart.plot.viewport(), where)
    qtbot.waitUntil(lambda: chart.plot.getPlotItem().getViewBox().toolTip() != "", timeout=2000)
    tip = chart.plot.getPlotItem().getViewBox().toolTip()
    assert tip.startswith("Evicted: alpha (small)") and "room for beta" in tip
    chart.set_paused(False)
    assert chart.pause_button.text() == "Pause"
