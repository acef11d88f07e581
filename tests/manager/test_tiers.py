"""Residency tiers through the manager, with fakes that keep "device" and "host" bytes apart: an
evicted model is parked in host RAM (the fake probe's "cpu" counter) and a later load restores it;
the tier's budget, its off switch and host-RAM devices; failures fall back to a drop or a cold
load; the cheapest loss goes first; the state and the events say what happened."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeProbe, ParkingFakeLoader, SleepingFakeLoader
from vramdeck.manager import Ledger, ModelManager
from vramdeck.manager.config import GIB
from vramdeck.manager.events import (
    Event,
    ModelEvicted,
    ModelLoaded,
    ModelParked,
    ModelRestored,
    ModelUnloaded,
)
from vramdeck.manager.residency import Residency
from vramdeck.manager.status import TaskState

THREE = """
inference: {host_cache_gb: %s}
models:
  a: {options: {m: {model_id: model-a, vram_gb: 4, device: %s}}}
  b: {options: {m: {model_id: model-b, vram_gb: 4, device: %s}}}
  c: {options: {m: {model_id: model-c, vram_gb: 4, device: %s}}}
"""

Make = Callable[..., tuple[ModelManager, FakeProbe, ParkingFakeLoader, list[Event]]]


@pytest.fixture
def tiered(tmp_path: Path) -> Iterator[Make]:
    made: list[ModelManager] = []

    def make(
        host_cache_gb: float | str = 16,
        device: str = "cuda:0",
        devices: dict[str, float] | None = None,
        text: str | None = None,
        **loader_kw: Any,
    ) -> tuple[ModelManager, FakeProbe, ParkingFakeLoader, list[Event]]:
        path = tmp_path / "models.yaml"
        body = text or THREE % (host_cache_gb, device, device, device)
        path.write_text(textwrap.dedent(body), encoding="utf-8")
        probe = FakeProbe(devices or {"cuda:0": 10.0, "cpu": 64.0})
        loader = ParkingFakeLoader(probe, **loader_kw)
        m = ModelManager(path, probe=probe, loaders=[loader], ledger=Ledger(None))
        events: list[Event] = []
        m.events.subscribe(events.append)
        made.append(m)
        return m, probe, loader, events

    yield make
    for m in made:
        for ex in m.devices.executors.values():
            ex.shutdown(wait=False)


def even_costs(m: ModelManager, tier: Residency = Residency.HOST) -> None:
    """Every model costs 0.1 s to bring back from `tier`, so idle time and priority alone decide
    (the fakes' own load times, a few ms apart, would decide otherwise)."""
    for task in m.tasks.values():
        option = task.get_selected_config()
        m.ledger.record_restore(option, "cuda:0", tier.value, 0.1)


def of(events: list[Event], kind: type[Event]) -> list[Any]:
    return [e for e in events if type(e) is kind]


async def test_an_evicted_model_is_parked_and_the_next_load_restores_it(tiered: Make) -> None:
    m, probe, loader, events = tiered()
    first = await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    await m.load_model("c")  # no room for three on 10 GB: a, the least recently used, is parked
    assert probe.used == {"cuda:0": 8 * GIB, "cpu": 4 * GIB}  # its bytes moved to host RAM
    assert m.task_state("a") is TaskState.PARKED and m.residency("a") is Residency.HOST
    assert "a" not in m.loaded_models and m.get_lru_model() == "b"
    status = m.task_status("a")
    assert status.residency is Residency.HOST and status.measured_bytes == 4 * GIB
    assert status.restore_s is not None  # the load time until a restore is measured
    (parked,) = of(events, ModelParked)
    assert (parked.task, parked.bytes, parked.host_used_bytes) == ("a", 4 * GIB, 4 * GIB)
    (evicted,) = of(events, ModelEvicted)
    assert evicted.reason.startswith("room for c: idle ") and evicted.reason.endswith("from RAM")
    tier = m.host_tier_status()
    assert tier.enabled and tier.used_bytes == 4 * GIB and tier.budget_bytes == 16 * GIB
    even_costs(m)

    again = await m.load_model("a")  # b is parked for it, a comes back without a load
    assert again is first and loader.loads == ["model-a", "model-b", "model-c"]
    assert loader.restores == ["model-a"] and loader.parks == ["model-a", "model-b"]
    assert probe.used == {"cuda:0": 8 * GIB, "cpu": 4 * GIB}
    assert m.task_state("a") is TaskState.LOADED and m.residency("a") is Residency.DEVICE
    assert m.task_state("b") is TaskState.PARKED and m.host_tier_status().used_bytes == 4 * GIB
    (restored,) = of(events, ModelRestored)
    assert restored.task == "a" and restored.bytes == 4 * GIB and restored.duration_s >= 0
    assert [e.task for e in of(events, ModelLoaded)] == ["a", "b", "c", "a"]
    option = m.tasks["a"].get_selected_config()
    measured = m.ledger.restore_seconds(option, "cuda:0", Residency.HOST.value)
    assert measured == pytest.approx(restored.duration_s)
    assert m.task_status("a").restore_s == 0.0  # on its device
    await m.shutdown()
    assert probe.used == {"cuda:0": 0, "cpu": 0}  # parked copies are freed at shutdown too


FOUR = THREE + "  d: {options: {m: {model_id: model-d, vram_gb: 4, device: cuda:0}}}\n"


async def test_the_tier_drops_its_oldest_to_admit_a_new_one(tiered: Make) -> None:
    m, probe, _loader, events = tiered(text=FOUR % (5, "cuda:0", "cuda:0", "cuda:0"))
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    await m.load_model("c")  # a is parked
    even_costs(m)
    await m.load_model("d")  # b is parked: a, the oldest in a tier with room for one, is dropped
    assert m.task_state("a") is TaskState.UNLOADED and m.task_state("b") is TaskState.PARKED
    assert probe.used == {"cuda:0": 8 * GIB, "cpu": 4 * GIB}
    (dropped,) = [e for e in of(events, ModelUnloaded) if e.task == "a"]
    assert dropped.reason == "room for b (it was in RAM)" and dropped.freed_bytes == 0
    assert m.host_tier_status().used_bytes == 4 * GIB
    await m.shutdown()


async def test_the_tier_is_off_at_zero_and_on_host_ram_devices(tiered: Make) -> None:
    m, probe, loader, _ = tiered(host_cache_gb=0)
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m, Residency.OFF)
    await m.load_model("c")
    assert m.task_state("a") is TaskState.UNLOADED and loader.parks == []
    assert probe.used["cpu"] == 0
    tier = m.host_tier_status()
    assert not tier.enabled and tier.reason == "off: inference.host_cache_gb is 0"
    await m.shutdown()

    m, probe, loader, _ = tiered(device="cpu", devices={"cpu": 10.0})
    await m.load_model("a")
    await m.load_model("b")
    for task in m.tasks.values():  # as even_costs, for a device of host RAM
        m.ledger.record_restore(task.get_selected_config(), "cpu", Residency.OFF.value, 0.1)
    await m.load_model("c")
    assert m.task_state("a") is TaskState.UNLOADED and loader.parks == []  # RAM to RAM: no
    assert probe.used["cpu"] == 8 * GIB
    tier = m.host_tier_status()
    assert not tier.enabled and tier.reason == "no GPU: the device is host RAM"
    await m.shutdown()


async def test_the_tier_admits_no_more_than_the_hosts_free_ram(tiered: Make) -> None:
    # 64 GB budget but a host with 5 GB of RAM: 4 GB + 2 GB headroom does not fit.
    m, _probe, loader, _ = tiered(host_cache_gb=64, devices={"cuda:0": 10.0, "cpu": 5.0})
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m, Residency.OFF)  # none can be parked: each would be dropped
    await m.load_model("c")
    assert m.task_state("a") is TaskState.UNLOADED and loader.parks == []
    await m.shutdown()


@pytest.mark.parametrize("failure", ["park_fails", "park_keeps"])
async def test_a_failed_park_falls_back_to_a_drop(tiered: Make, failure: str) -> None:
    m, probe, _loader, events = tiered(**{failure: True})
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    await m.load_model("c")
    assert m.task_state("a") is TaskState.UNLOADED and m.residency("a") is Residency.OFF
    assert probe.used == {"cuda:0": 8 * GIB, "cpu": 0}  # nothing held on either side
    assert of(events, ModelParked) == [] and m.host_tier_status().used_bytes == 0
    assert [e.task for e in of(events, ModelEvicted)] == ["a"]
    await m.shutdown()


async def test_a_failed_restore_falls_back_to_a_cold_load(tiered: Make) -> None:
    m, probe, loader, events = tiered(restore_fails=True)
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    await m.load_model("c")
    assert m.task_state("a") is TaskState.PARKED
    model = await m.load_model("a")
    assert loader.restores == ["model-a"] and loader.loads.count("model-a") == 2
    assert model.parked is False and m.task_state("a") is TaskState.LOADED
    assert probe.used == {"cuda:0": 8 * GIB, "cpu": 4 * GIB}  # a loaded cold, b parked
    assert of(events, ModelRestored) == []
    await m.shutdown()


async def test_unloading_a_parked_task_frees_its_host_copy(tiered: Make) -> None:
    m, probe, _loader, events = tiered()
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    await m.load_model("c")
    await m.unload_model("a")
    assert m.task_state("a") is TaskState.UNLOADED and probe.used["cpu"] == 0
    assert of(events, ModelUnloaded)[-1].reason == "user (it was in RAM)"
    assert m.host_tier_status().used_bytes == 0
    await m.shutdown()


PRIORITY = """
inference: {host_cache_gb: 0}
models:
  a: {priority: 100, options: {m: {model_id: model-a, vram_gb: 4, device: cuda:0}}}
  b: {options: {m: {model_id: model-b, vram_gb: 4, device: cuda:0}}}
  c: {options: {m: {model_id: model-c, vram_gb: 4, device: cuda:0}}}
"""


async def test_priority_protects_a_model_and_the_lru_calls_keep_their_meaning(
    tiered: Make,
) -> None:
    m, _probe, _loader, events = tiered(text=PRIORITY)
    await m.load_model("a")
    await m.load_model("b")
    assert m.get_lru_model() == "a"  # strictly least recently used, as the seed says
    even_costs(m, Residency.OFF)
    await m.load_model("c")  # a is the LRU, but losing it costs 100 times more: b goes
    assert [e.task for e in of(events, ModelEvicted)] == ["b"]
    assert list(m.loaded_models) == ["a", "c"]
    assert await m.evict_lru_model() == "a"  # evict_lru_model: strictly LRU
    await m.shutdown()


def test_priority_must_be_a_positive_number(write_config: Callable[[str], Path]) -> None:
    from vramdeck.manager.config import ConfigError, load_config

    bad = write_config("models:\n  a: {priority: -1, options: {m: {model_id: x}}}\n")
    with pytest.raises(ConfigError, match=r"models\.a\.priority.*expected a number"):
        load_config(bad)


async def test_the_plan_says_where_each_victim_goes_and_it_goes_there(tiered: Make) -> None:
    m, probe, _loader, _ = tiered(host_cache_gb=5)  # the tier takes one 4 GB model
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    reading = m.devices.read("cuda:0")
    plan = m._eviction.plan_room("cuda:0", reading, 8 * GIB)  # both must go
    assert [(v.model.task, v.goes_to, v.restore_s) for v in plan.victims] == [
        ("a", Residency.HOST, 0.1),
        ("b", Residency.OFF, m.task_status("b").load_duration_s),  # no room left in the tier
    ]
    assert plan.victims[0].reason.endswith("back in 0.1 s from RAM")
    assert probe.used == {"cuda:0": 8 * GIB, "cpu": 0}  # a plan changes nothing
    # An 8 GB task: making room for it does what the plan said.
    m.tasks["c"].get_selected_config().vram_gb = 8
    await m.load_model("c")
    assert m.residency("a") is Residency.HOST and m.residency("b") is Residency.OFF
    await m.shutdown()


async def test_sleeping_models_are_stopped_when_nothing_else_makes_room(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(FOUR % (16, "cuda:0", "cuda:0", "cuda:0")), encoding="utf-8")
    probe = FakeProbe({"cuda:0": 10.0, "cpu": 64.0})
    loader = SleepingFakeLoader(probe)
    m = ModelManager(path, probe=probe, loaders=[loader], ledger=Ledger(None))
    await m.load_model("a")
    await m.load_model("b")  # 4 + 4 of 8.5
    even_costs(m, Residency.SLEEPING)
    await m.load_model("c")  # a sleeps, keeping 1 GB: 1 + 4 + 4 = 9 > 8.5, so b sleeps too
    assert m.task_state("a") is TaskState.SLEEPING and m.task_state("b") is TaskState.SLEEPING
    assert probe.used["cuda:0"] == 6 * GIB
    m.tasks["d"].get_selected_config().vram_gb = 7
    # 1 + 1 + 4 + 7: even c sleeping leaves 9 > 8.5; the sleepers are stopped, then c sleeps.
    await m.load_model("d")
    assert m.task_state("a") is TaskState.UNLOADED and m.task_state("b") is TaskState.UNLOADED
    assert m.task_state("c") is TaskState.SLEEPING and m.task_state("d") is TaskState.LOADED
    assert probe.used["cuda:0"] == 8 * GIB
    await m.shutdown()
    assert probe.used["cuda:0"] == 0


async def test_what_a_model_keeps_asleep_is_remembered_in_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(FOUR % (16, "cuda:0", "cuda:0", "cuda:0")), encoding="utf-8")
    probe = FakeProbe({"cuda:0": 10.0, "cpu": 64.0})
    ledger = Ledger(tmp_path / "ledger.json")
    m = ModelManager(path, probe=probe, loaders=[SleepingFakeLoader(probe)], ledger=ledger)
    a = m.tasks["a"].get_selected_config()
    await m.load_model("a")
    await m.load_model("b")
    assert ledger.asleep_bytes(a, "cuda:0") is None  # a never slept
    version = ledger.version
    await m.load_model("c")  # a sleeps, keeping 1 GB
    assert m.task_state("a") is TaskState.SLEEPING
    assert ledger.asleep_bytes(a, "cuda:0") == GIB and ledger.version > version
    await m.shutdown()
    ledger.save()
    assert Ledger(tmp_path / "ledger.json").asleep_bytes(a, "cuda:1") == GIB  # per device kind


async def test_a_reload_that_shrinks_the_tier_drops_parked_models(tiered: Make) -> None:
    m, probe, _loader, _ = tiered()
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    await m.load_model("c")
    assert m.task_state("a") is TaskState.PARKED
    m.config_path.write_text(
        m.config_path.read_text().replace("host_cache_gb: 16", "host_cache_gb: 0")
    )
    await m.reload_config()
    assert m.task_state("a") is TaskState.UNLOADED and probe.used["cpu"] == 0
    assert not m.host_tier_status().enabled
    await m.shutdown()


async def test_a_parked_model_idle_past_idle_unload_s_is_let_go(tiered: Make) -> None:
    m, probe, _loader, events = tiered(
        text=THREE.replace("host_cache_gb: %s", "host_cache_gb: %s, idle_unload_s: 600")
        % (16, "cuda:0", "cuda:0", "cuda:0")
    )
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    await m.load_model("c")  # a is parked
    assert m.task_state("a") is TaskState.PARKED
    await m._housekeeping.check_health()  # a was used moments ago: it stays parked
    assert m.task_state("a") is TaskState.PARKED and probe.used["cpu"] == 4 * GIB
    parked = m._core.table.entry("a").suspended
    assert parked is not None
    parked.last_used -= 601  # as if nobody had used a for ten minutes
    await m._housekeeping.check_health()
    assert m.task_state("a") is TaskState.UNLOADED
    assert probe.used == {"cuda:0": 8 * GIB, "cpu": 0}  # its host copy is freed
    assert m.host_tier_status().used_bytes == 0
    (dropped,) = [e for e in of(events, ModelUnloaded) if e.task == "a"]
    assert dropped.reason == "idle for 600 s (it was in RAM)"
    assert {"b", "c"} <= set(m.loaded_models)  # the models on the device were used: they stay
    await m.shutdown()


async def test_the_first_eviction_parks_with_the_default_budget(tiered: Make) -> None:
    """host_cache_gb unset: the budget is read from the host's RAM on first use, and the very
    first eviction already parks (it dropped, as the copy of the tier had no budget yet)."""
    m, probe, loader, _events = tiered(text=THREE.replace("inference: {host_cache_gb: %s}\n", "")
                                       % ("cuda:0", "cuda:0", "cuda:0"))  # fmt: skip
    await m.load_model("a")
    await m.load_model("b")
    even_costs(m)
    await m.load_model("c")
    assert m.task_state("a") is TaskState.PARKED and loader.parks == ["model-a"]
    assert probe.used["cpu"] == 4 * GIB and m.host_tier_status().budget_bytes > 4 * GIB
    await m.shutdown()
