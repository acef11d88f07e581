"""The chart's host-RAM tier: a real panel over a real ModelManager whose fakes keep "device" and
"host" bytes apart (a park moves a model's bytes from the fake cuda:0 to the host), read from
the plot's curves; the tier says off where it is off; the history keeps the tier's own count."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QLabel

from tests.fakes import FakeProbe, ParkingFakeLoader
from tests.gui.helpers import Panel, until, write_config
from vramdeck.gui.chart_host_tier import tier_text
from vramdeck.gui.memory_history import MemoryHistory
from vramdeck.gui.records import HostTierInfo, LogEntry, MemorySample
from vramdeck.manager import Ledger, MemorySampled, ModelManager
from vramdeck.manager.residency import Residency

GIB = 1024**3

THREE = """
inference: {host_cache_gb: %s}
models:
  a: {options: {m: {model_id: model-a, vram_gb: 4, device: %s}}}
  b: {options: {m: {model_id: model-b, vram_gb: 4, device: %s}}}
  c: {options: {m: {model_id: model-c, vram_gb: 4, device: %s}}}
"""


@pytest.fixture
def tiered_panel(
    make_panel: Callable[..., Panel], tmp_path: Path
) -> Callable[..., tuple[Panel, FakeProbe]]:
    """A started panel over three 4 GB models, on a fake 10 GB GPU with 64 GB of host RAM
    (or on the host alone: `gpu=False`)."""

    def make(host_cache_gb: float = 16, *, gpu: bool = True) -> tuple[Panel, FakeProbe]:
        device = "cuda:0" if gpu else "cpu"
        path = write_config(tmp_path, THREE % (host_cache_gb, device, device, device))
        probe = FakeProbe({"cuda:0": 10.0, "cpu": 64.0} if gpu else {"cpu": 64.0})
        manager = ModelManager(path, probe=probe, loaders=[ParkingFakeLoader(probe)],
                               ledger=Ledger(None))  # fmt: skip
        return make_panel(manager=manager), probe

    return make


def even_costs(manager: ModelManager) -> None:
    """Every model costs the same to bring back from RAM, so the least recently used goes."""
    for task in manager.tasks.values():
        manager.ledger.record_restore(task.get_selected_config(), "cuda:0", "in RAM", 0.1)


def last_y(chart: Any, curve: Any) -> float:
    return float(chart.host_tier.view_data(curve)[1][-1])


def test_the_band_shows_what_a_park_put_in_host_ram(
    tiered_panel: Callable[..., tuple[Panel, FakeProbe]],
) -> None:
    panel, probe = tiered_panel()
    chart = panel.window.chart
    tier_history = chart.history.host_tier

    def on_gpu(tasks: set[str]) -> bool:
        device = chart.history.devices.get("cuda:0")
        return (
            device is not None
            and device.latest is not None
            and set(device.latest.per_task) == tasks
        )

    def parked(tasks: tuple[str, ...]) -> bool:
        tier = tier_history.tier
        return tier is not None and tier.parked == tasks and tier.used == 4 * GIB * len(tasks)

    async def park_a() -> None:
        for task in ("a", "b"):
            await panel.bridge.load(task)
        even_costs(panel.manager)
        await panel.bridge.load("c")  # no room for three on 10 GB: a, the oldest, is parked
        await until(lambda: parked(("a",)) and on_gpu({"b", "c"}), "samples after the park")

    panel.run(park_a())
    assert probe.used == {"cuda:0": 8 * GIB, "cpu": 4 * GIB}  # a's bytes are in host RAM
    chart.redraw(now=time.time())
    host = chart.host_tier
    assert host.isVisible() and host.plot.isVisible()
    assert host.summary.text() == "host RAM tier: 4.00 GiB parked of 16.00 GiB budget · a 4.00 GiB"
    assert last_y(chart, host.bands["a"]) == pytest.approx(4.0)  # GiB, the band's top now
    assert last_y(chart, host.parked_curve) == pytest.approx(4.0)  # the tier's own count
    assert host.budget_line.isVisible() and host.budget_line.value() == pytest.approx(16.0)
    assert host.plot.getPlotItem().viewRange()[1] == pytest.approx([0, 16 * 1.15])
    # The device plot shows the park too: a's park marker, where b and c are now.
    assert "park" in {m.kind for m in chart.history.markers_since("cuda:0", 0)}

    async def restore_a() -> None:
        even_costs(panel.manager)
        await panel.bridge.load("a")  # back from RAM; b, now the oldest, is parked for it
        await until(lambda: parked(("b",)) and on_gpu({"a", "c"}), "samples after the restore")

    panel.run(restore_a())
    chart.redraw(now=time.time())
    assert panel.manager.residency("a") is Residency.DEVICE
    assert last_y(chart, host.bands["b"]) == pytest.approx(4.0)
    assert not host.bands["a"].isVisible() or last_y(chart, host.bands["a"]) == 0
    x, y = host.view_data(host.parked_curve)
    assert y.max() == pytest.approx(4.0) and y[-1] == pytest.approx(4.0)  # a out, b in
    assert host.summary.text().endswith("· b 4.00 GiB")
    # Drawn at the device plot's times: both plots end now, over the same window.
    assert x[-1] == 0.0 and x.min() >= -chart.window_s


def test_only_the_hosts_sample_reads_the_tier(
    tiered_panel: Callable[..., tuple[Panel, FakeProbe]], monkeypatch: pytest.MonkeyPatch
) -> None:
    panel, _probe = tiered_panel()
    reads: list[int] = []
    real = panel.manager.host_tier_status

    def counted() -> Any:
        reads.append(1)
        return real()

    monkeypatch.setattr(panel.manager, "host_tier_status", counted)
    gpu = MemorySampled(device="cuda:0", used_bytes=0, total_bytes=10 * GIB,
                        budget_bytes=9 * GIB, manager_bytes=0)  # fmt: skip
    assert panel.bridge.sample_record(gpu).host_tier is None and reads == []
    host = MemorySampled(device="cpu", used_bytes=0, total_bytes=64 * GIB,
                         budget_bytes=50 * GIB, manager_bytes=0)  # fmt: skip
    tier = panel.bridge.sample_record(host).host_tier
    assert tier == HostTierInfo(True, 0, 16 * GIB, "", ()) and reads == [1]


@pytest.mark.parametrize(
    ("host_cache_gb", "gpu", "said"),
    [
        (16, False, "host-RAM tier off: no GPU: the device is host RAM"),
        (0, True, "host-RAM tier off: inference.host_cache_gb is 0"),
    ],
)
def test_the_tier_says_off_once_under_the_budgets_and_the_chart_keeps_quiet(
    tiered_panel: Callable[..., tuple[Panel, FakeProbe]],
    host_cache_gb: float,
    gpu: bool,
    said: str,
) -> None:
    panel, _probe = tiered_panel(host_cache_gb, gpu=gpu)
    window = panel.window
    chart = window.chart
    panel.run(until(lambda: chart.history.host_tier.tier is not None, "a sample of the host"))
    chart.redraw(now=time.time())
    panel.run(panel.bridge.plan_budget())
    assert window.isVisible() and not chart.host_tier.isVisible()  # no band, no line of text
    assert len(chart.history.host_tier.ring) == 0
    shown = [label.text() for label in window.findChildren(QLabel) if label.isVisible()]
    shown = [text for text in shown if "tier off" in text]
    assert shown == [window.budget_legend.text()]  # said once in the whole window
    assert shown[0].count("tier off") == 1 and said in shown[0]


def tier_sample(at: float, tier: HostTierInfo) -> MemorySample:
    return MemorySample(device="cpu", at=at, used=0, total=64 * GIB, limit=48 * GIB,
                        threshold=48 * GIB, memory_budget=None, manager=0,
                        host_tier=tier)  # fmt: skip


def test_the_history_sizes_parked_tasks_from_their_events_under_the_tiers_count() -> None:
    history = MemoryHistory(history_s=10, rate_hz=10)
    history.add_event(LogEntry(at=1.0, kind="ModelParked", task="a", device="cuda:0",
                               bytes=3 * GIB))  # fmt: skip
    history.add_sample(tier_sample(1.1, HostTierInfo(True, 3 * GIB, 8 * GIB, parked=("a",))))
    history.add_sample(tier_sample(1.2, HostTierInfo(True, 0, 8 * GIB)))  # a restored
    tier = history.host_tier
    rows = tier.since(0)
    assert rows[:, 1].tolist() == [3 * GIB, 0]  # the tier's count
    assert rows[:, 2].tolist() == [8 * GIB, 8 * GIB]  # its budget
    assert rows[:, tier.task_columns["a"]].tolist() == [3 * GIB, 0]
    assert tier_text(tier.tier, tier) == (  # type: ignore[arg-type]
        "host RAM tier: nothing parked of 8.00 GiB budget (an evicted model is parked here "
        "when it fits)"
    )
    off = HostTierInfo(False, reason="no GPU: the device is host RAM")
    history.add_sample(tier_sample(1.3, off))
    assert len(tier.ring) == 2 and tier.tier is off  # no rows while it is off


def test_no_band_until_the_tier_is_read(qtbot: Any) -> None:
    from vramdeck.gui.vram_chart import VramChart

    chart = VramChart(fps=10)
    qtbot.addWidget(chart)
    chart.show()
    chart.add_sample(MemorySample(device="cuda:0", at=1.0, used=0, total=8 * GIB,
                                  limit=6 * GIB, threshold=7 * GIB, memory_budget=None,
                                  manager=0))  # fmt: skip
    chart.redraw(now=2.0)
    assert chart.frames >= 1 and not chart.host_tier.isVisible()


def test_what_came_before_the_chart_is_replayed_in_order(qtbot: Any) -> None:
    """The chart is built after the window shows: a park and the host's sample after it, kept
    until then, still size the parked model's band."""
    from vramdeck.gui.chart_slot import ChartSlot

    slot = ChartSlot()
    qtbot.addWidget(slot)
    slot.add_event(LogEntry(at=1.0, kind="ModelParked", task="a", device="cuda:0",
                            bytes=3 * GIB))  # fmt: skip
    slot.add_sample(tier_sample(1.1, HostTierInfo(True, 3 * GIB, 8 * GIB, parked=("a",))))
    tier = slot.build().history.host_tier
    assert tier.since(0)[:, tier.task_columns["a"]].tolist() == [3 * GIB]
