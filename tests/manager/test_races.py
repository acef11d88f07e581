"""Concurrency and failure paths: each test is a scenario a review found to corrupt state."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from tests.fakes import FakeLoader, FakeModel
from vramdeck.manager import (
    InsufficientMemoryError,
    ModelEvicted,
    ModelInUseError,
    ModelLoadError,
    ModelLoading,
    ModelUnloaded,
)
from vramdeck.manager.config import GIB
from vramdeck.manager.loaders import AsyncLoader
from vramdeck.manager.memory import ProbeError, visible_indices

SWITCH = """
models:
  a:
    selected: old
    options:
      old: {model_id: OLD, vram_gb: 1}
      new: {model_id: NEW, vram_gb: 1}
  b: {options: {o: {model_id: B, vram_gb: 3}}}
  c: {options: {o: {model_id: C, vram_gb: 3}}}
inference: {offload_threshold: 0.7}
"""


@dataclass
class GatedUnload(FakeLoader):
    """Its unloads say they started (`unloading`), then wait for `release`."""

    unloading: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def unload(self, model, device):
        self.unloading.set()
        self.release.wait(10)
        super().unload(model, device)


async def set_in_a_thread(event: threading.Event) -> None:
    """Wait, off the loop, until a worker sets `event` (bounded: a regression fails, not hangs)."""
    assert await asyncio.to_thread(event.wait, 10)


def loading_started(m, model_id: str) -> asyncio.Event:
    """Set once a load of `model_id` has started."""
    started = asyncio.Event()

    def on_loading(event: ModelLoading) -> None:
        if event.model_id == model_id:
            started.set()

    m.events.subscribe(on_loading, ModelLoading)
    return started


def use_loader(m, loader) -> None:
    from vramdeck.manager.loaders import ExternalAPILoader, LoaderRegistry

    m.registry = LoaderRegistry([loader, ExternalAPILoader()])


async def test_shutdown_refuses_new_loads_and_leaves_nothing(make_manager):
    gate = threading.Event()
    m, probe, _loader = make_manager(SWITCH, gate=gate)
    first = loading_started(m, "OLD")
    warmup = asyncio.ensure_future(m.warmup_models(force=True))
    await first.wait()  # a's load waits at the gate
    stopping = asyncio.ensure_future(m.shutdown())
    await asyncio.sleep(0)  # one step: the shutdown refuses new loads from now on
    gate.set()
    await stopping
    await warmup  # its later loads were refused ("shut down"), reported, not raised
    assert m.loaded_models == {} and probe.used["cuda:0"] == 0
    assert m.devices.executors == {} and not m._housekeeper.running
    with pytest.raises(RuntimeError, match="shut down"):
        await m.load_model("b")


async def test_a_lease_taken_while_an_unload_waits_for_the_lock_wins(make_manager):
    m, _, _ = make_manager(SWITCH)
    await m.load_model("b")
    lock = m.devices.lock("cuda:0")
    await lock.acquire()  # as if an eviction were deciding on this device
    unload = asyncio.ensure_future(m.unload_model("b"))
    await asyncio.sleep(0)  # one step: the unload runs up to the lock and waits there
    assert lock._waiters
    async with m.use("b") as model:
        lock.release()
        with pytest.raises(ModelInUseError):
            await unload
        assert not model.unloaded


async def test_a_victim_leased_during_an_eviction_pass_is_kept(make_manager):
    m, probe, _ = make_manager(
        SWITCH.replace(
            "vram_gb: 3}}}\n  c",
            "vram_gb: 3}}}\n  d: {options: {o: {model_id: D, vram_gb: 2}}}\n  c",
        )
    )
    loader = GatedUnload(probe)
    use_loader(m, loader)
    await m.load_model("d")  # 2
    await m.load_model("b")  # 3: 5 of the 7 GiB limit
    evicted: list[ModelEvicted] = []
    m.events.subscribe(evicted.append, ModelEvicted)
    loading = asyncio.ensure_future(m.load_model("c"))  # needs 1 more: evicts d, then b if short
    await set_in_a_thread(loader.unloading)  # d is being unloaded
    async with m.use("b") as held:
        loader.release.set()
        await loading
        assert not held.unloaded
    assert [e.task for e in evicted] == ["d"]


async def test_use_never_yields_a_model_evicted_before_it_was_held(make_manager):
    m, _, _ = make_manager(SWITCH)
    first = asyncio.ensure_future(m.load_model("b"))

    async def evict_as_soon_as_loaded() -> None:
        await first
        await m.unload_model("b")

    evictor = asyncio.ensure_future(evict_as_soon_as_loaded())
    async with m.use("b") as model:
        assert not model.unloaded and m.task_state("b") == "in use"
    await evictor


async def test_reload_waits_for_loads_and_unloads_changed_options_their_way(make_manager):
    m, probe, loader = make_manager(SWITCH, delay_s=0.1)
    in_flight = asyncio.ensure_future(m.load_model("c"))
    await m.load_model("a")
    await asyncio.sleep(0)
    path = m.config_path
    path.write_text(
        "models:\n  a:\n    selected: old\n    options:\n"
        "      old: {model_id: an-api-model, framework: external_api}\n"
    )
    await m.reload_config()  # c (gone) and a (now another model) must both go
    await in_flight
    assert m.loaded_models == {} and probe.used["cuda:0"] == 0
    assert sorted(loader.unloads) == ["C", "OLD"]
    await m.shutdown()  # an orphan entry would make this raise


async def test_a_failing_unload_is_reported_and_shutdown_still_completes(make_manager):
    m, _probe, loader = make_manager(SWITCH)

    def broken_unload(model, device):
        raise RuntimeError("driver said no")

    loader.unload = broken_unload
    seen: list[ModelUnloaded] = []
    m.events.subscribe(seen.append, ModelUnloaded)
    await m.load_model("b")
    await m.load_model("c")
    await m.shutdown()
    assert [e.task for e in seen] == ["b", "c"]
    assert all(e.error == "RuntimeError: driver said no" for e in seen)
    assert m.loaded_models == {} and m.devices.executors == {}


async def test_a_load_during_a_switch_gets_the_new_model(make_manager):
    m, probe, _ = make_manager(SWITCH)
    loader = GatedUnload(probe)
    use_loader(m, loader)
    await m.load_model("a")
    switch = asyncio.ensure_future(m.set_selected_model("a", "new"))
    await set_in_a_thread(loader.unloading)  # the switch is unloading OLD
    loading = asyncio.ensure_future(m.load_model("a"))
    await asyncio.sleep(0)  # one step: the load waits for the switch
    loader.release.set()
    model = await loading
    await switch
    assert model.model_id == "NEW" and m.get_loaded_models()["a"]["option"] == "new"


async def test_a_cancelled_switch_still_completes_consistently(make_manager):
    gate = threading.Event()
    gate.set()
    m, _, _ = make_manager(SWITCH, gate=gate)
    await m.load_model("a")
    gate.clear()
    new_loading = loading_started(m, "NEW")
    switch = asyncio.ensure_future(m.set_selected_model("a", "new"))
    await new_loading.wait()  # the new option's load waits at the gate
    switch.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await switch
    model = await m.load_model("a")  # waits for the switch, which went on
    assert m.tasks["a"].selected == "new" and model.model_id == "NEW"
    assert m.get_loaded_models()["a"]["option"] == "new"


async def test_auto_placement_counts_other_processes(make_manager):
    m, _, _ = make_manager(
        "models: {a: {options: {o: {model_id: A, vram_gb: 4}}}}\n",
        devices={"cuda:0": 24, "cuda:1": 10, "cpu": 32},
        other_gb={"cuda:0": 22},
    )
    await m.load_model("a")
    assert m.get_loaded_models()["a"]["device"] == "cuda:1"


async def test_a_load_in_flight_is_not_counted_twice(make_manager):
    # x holds 3 GiB; a (4 GiB) has allocated but not finished; b needs 1: 8 ≤ 9 fits.
    m, probe, _ = make_manager(
        """
        models:
          x: {options: {o: {model_id: X, vram_gb: 3}}}
          a: {options: {o: {model_id: A, vram_gb: 4}}}
          b: {options: {o: {model_id: B, vram_gb: 1, device: cpu}}}
        """
    )

    a_allocated, a_may_finish = asyncio.Event(), asyncio.Event()

    class AllocatesEarly(AsyncLoader):  # async, so b does not queue behind a in a worker
        frameworks = ("transformers",)

        async def load(self, option, ctx):
            probe.add(ctx.device, option.vram_bytes)
            if option.model_id == "A":
                a_allocated.set()
                await a_may_finish.wait()
            return FakeModel(option.model_id, ctx.device, option.vram_bytes, "loop")

        def footprint(self, model, device):
            return model.nbytes

        async def unload(self, model, device):
            probe.add(device, -model.nbytes)

    use_loader(m, AllocatesEarly())
    m.tasks["b"].options["o"].device = "cuda:0"
    evicted: list[ModelEvicted] = []
    m.events.subscribe(evicted.append, ModelEvicted)
    await m.load_model("x")
    loading_a = asyncio.ensure_future(m.load_model("a"))
    await a_allocated.wait()
    await m.load_model("b")
    a_may_finish.set()
    await loading_a
    assert evicted == [] and sorted(m.loaded_models) == ["a", "b", "x"]


async def test_eviction_stops_when_the_memory_does_not_come_back(make_manager):
    # c needs 5 GiB: with b (3) and a (1) loaded under a 7 GiB limit, b must go.
    text = SWITCH.replace("model_id: C, vram_gb: 3", "model_id: C, vram_gb: 5")
    text = text.replace(
        "offload_threshold: 0.7", "offload_threshold: 0.7, evict_verify_timeout_s: 0.05"
    )
    m, probe, _ = make_manager(text)
    await m.load_model("b")
    await m.load_model("a")
    probe.leak["cuda:0"] = 3 * GIB  # b's unload will keep all of its memory
    with pytest.raises(
        InsufficientMemoryError,
        match=r"evicted b from cuda:0, but the device did not show b's 3\.00 GiB free",
    ):
        await m.load_model("c")
    assert list(m.loaded_models) == ["a"]  # a was not evicted too, in vain


async def test_an_unreadable_device_fails_the_load_and_evicts_nothing(make_manager):
    m, probe, _ = make_manager(SWITCH)
    await m.load_model("b")
    real_read = probe.read

    def failing_read(device):
        raise ProbeError(f"cannot read the memory of {device} (Fake) through NVML")

    probe.read = failing_read
    with pytest.raises(ModelLoadError, match="cannot read the memory of cuda:0"):
        await m.load_model("c")
    probe.read = real_read
    assert list(m.loaded_models) == ["b"]


def test_cuda_visible_devices_picks_and_orders_nvml_devices():
    uuids = ["GPU-aaa-0", "GPU-bbb-1", "GPU-ccc-2"]
    assert visible_indices(None, uuids) == [0, 1, 2]
    assert visible_indices("2,0", uuids) == [2, 0]
    assert visible_indices("GPU-bbb", uuids) == [1]
    assert visible_indices("1,7,0", uuids) == [1]  # CUDA stops at the first invalid entry
    assert visible_indices("", uuids) == []
