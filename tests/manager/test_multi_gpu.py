"""A server on several GPUs: placed, made room for, measured, charged and freed on each of them.

The server is the real fake server process (tests/manager/fake_server.py); the devices are a fake
two-GPU probe that reports per-process bytes for the server's pids on both cards, as NVML does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes import FakeLoader, TwoGpuProbe
from tests.manager.fake_server import fake_command
from vramdeck.gui.bridge_records import memory_sample, task_row
from vramdeck.manager import (
    Event,
    InsufficientMemoryError,
    Ledger,
    MemoryNotReturned,
    MemorySampled,
    ModelEvicted,
    ModelLoadError,
    ModelManager,
    ModelSlept,
    ModelUnloaded,
    ModelWoken,
    ServerOutput,
)
from vramdeck.manager.config import GIB, ModelConfig
from vramdeck.manager.loaders import VllmLoader
from vramdeck.manager.loaders.servers.placement import (
    PlacementError,
    server_devices,
    split_evenly,
    tensor_parallel_size,
    visible_devices,
)
from vramdeck.manager.status import TaskState


def tp_server(*flags: str, vram_gb: float = 4.0, **fields: Any) -> dict[str, Any]:
    command = fake_command("--hold-mb", "1", "--print-env", "CUDA_VISIBLE_DEVICES", *flags)
    return {"selected": "tp", "options": {"tp": {
        "model_id": "fake-model", "framework": "vllm", "vram_gb": vram_gb, "device": "cuda:0",
        "server_command": command, "startup_timeout_s": 10, "stop_timeout_s": 2, **fields,
    }}}  # fmt: skip


def fake_task(gb: float, device: str, *, pinned: bool = False) -> dict[str, Any]:
    return {"selected": "m", "pinned": pinned, "options": {"m": {
        "model_id": f"fake-{device}", "framework": "fake", "vram_gb": gb, "device": device,
    }}}  # fmt: skip


class Harness:
    def __init__(self, tmp_path: Path, models: dict[str, Any], probe: TwoGpuProbe) -> None:
        path = tmp_path / "models.yaml"
        config = {"inference": {"offload_threshold": 1.0}, "models": models}
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.probe = probe
        self.fake = FakeLoader(probe)
        self.manager = ModelManager(
            path, probe=probe, loaders=[self.fake, VllmLoader()], ledger=Ledger(None)
        )
        self.events: list[Event] = []
        self.manager.events.subscribe(self.events.append)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def harness(tmp_path: Path) -> Any:
    made: list[Harness] = []

    def make(models: dict[str, Any], probe: TwoGpuProbe | None = None) -> Harness:
        made.append(Harness(tmp_path, models, probe or TwoGpuProbe()))
        return made[-1]

    yield make
    for h in made:
        await asyncio.wait_for(h.manager.shutdown(), 15)


# ----------------------------------------------------------------- which devices (pure)


def option_with(**fields: Any) -> ModelConfig:
    return ModelConfig({"model_id": "m", "framework": "vllm", "vram_gb": 4, **fields}, name="tp")


@pytest.mark.parametrize(
    ("command", "tp"),
    [
        (["vllm", "serve", "m", "--tensor-parallel-size", "2"], 2),
        (["vllm", "serve", "m", "--tensor-parallel-size=4"], 4),
        (["python", "-m", "sglang.launch_server", "--tp", "2"], 2),
        (["python", "-m", "sglang.launch_server", "--tp-size=3"], 3),
        (["vllm", "serve", "m"], None),
        (None, None),
    ],
)
def test_the_tensor_parallel_size_is_read_from_the_command(
    command: list[str] | None, tp: int | None
) -> None:
    assert tensor_parallel_size(command) == tp


@pytest.mark.parametrize(
    "bad", [["--tp"], ["--tp", "two"], ["--tensor-parallel-size=0"], ["--tp", "65"], ["--tp=-1"]]
)
def test_a_bad_tensor_parallel_size_is_refused_naming_the_flag(bad: list[str]) -> None:
    with pytest.raises(PlacementError, match=r"--t\S+ takes a whole number of GPUs from 1 to 64"):
        tensor_parallel_size(["vllm", "serve", "m", *bad])


@pytest.mark.parametrize("bad", ["", "0,0", "0,x", "GPU-abc", " , "])
def test_a_bad_cuda_visible_devices_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(PlacementError, match=r"server_env\.CUDA_VISIBLE_DEVICES: expected"):
        visible_devices({"CUDA_VISIBLE_DEVICES": bad})


def test_the_devices_come_from_the_tp_size_or_the_visible_cards() -> None:
    two = ("cuda:0", "cuda:1")
    present = ["cuda:0", "cuda:1", "cuda:2", "cpu"]
    tp2 = ["vllm", "serve", "m", "--tp", "2"]
    assert server_devices(option_with(server_command=tp2), "cuda:0", present) == two
    assert server_devices(option_with(server_command=tp2), "cuda:1", present) == (
        "cuda:1", "cuda:2",
    )  # fmt: skip
    both = option_with(server_env={"CUDA_VISIBLE_DEVICES": "1,0"})
    assert server_devices(both, "cuda:0", present) == ("cuda:1", "cuda:0")
    first_two = option_with(server_command=tp2, server_env={"CUDA_VISIBLE_DEVICES": "2,0,1"})
    assert server_devices(first_two, "cuda:0", present) == ("cuda:2", "cuda:0")
    one = option_with(server_env={"CUDA_VISIBLE_DEVICES": "1"})
    assert server_devices(one, "cuda:0", present) == ("cuda:0",)  # one card: as before
    assert server_devices(option_with(), "cuda:1", present) == ("cuda:1",)


def test_asking_for_more_devices_than_there_are_is_refused_clearly() -> None:
    present = ["cuda:0", "cuda:1", "cpu"]
    tp4 = option_with(server_command=["vllm", "serve", "m", "--tp", "4"])
    with pytest.raises(PlacementError, match=r"needs 4 GPUs .* cuda:2, cuda:3 are not present"):
        server_devices(tp4, "cuda:0", present)
    named = option_with(
        server_command=["vllm", "--tp", "3"], server_env={"CUDA_VISIBLE_DEVICES": "0,1"}
    )
    with pytest.raises(PlacementError, match=r"asks for 3 GPUs but .* names only 2"):
        server_devices(named, "cuda:0", present)
    with pytest.raises(PlacementError, match="needs CUDA devices, not cpu"):
        server_devices(option_with(server_command=["vllm", "--tp", "2"]), "cpu", present)


def test_the_estimate_is_split_evenly_over_the_ranks() -> None:
    assert split_evenly(10, ["cuda:0", "cuda:1"]) == {"cuda:0": 5, "cuda:1": 5}
    assert split_evenly(11, ["cuda:0", "cuda:1", "cuda:2"]) == {
        "cuda:0": 5, "cuda:1": 3, "cuda:2": 3,
    }  # fmt: skip


# ----------------------------------------------------------------- the manager


async def test_a_tp_server_is_measured_charged_shown_and_freed_on_both_devices(
    harness: Any,
) -> None:
    h = harness({"chat": tp_server("--tensor-parallel-size", "2")})
    m = h.manager
    await asyncio.wait_for(m.load_model("chat"), 15)
    lines = [e.line for e in h.of(ServerOutput)]
    assert "environment: CUDA_VISIBLE_DEVICES=0,1" in lines  # it was started on both cards
    assert {"cuda:0", "cuda:1"} <= set(h.probe.asked)  # measured on each from NVML's figures
    assert m.model_memory_usage["chat"] == 4 * GIB  # the total
    assert m._core.table.bytes_on("cuda:0") == 2 * GIB  # each device's budget is charged its share
    assert m._core.table.bytes_on("cuda:1") == 2 * GIB
    status = m.task_status("chat")
    assert status.device == "cuda:0"
    assert status.devices == ("cuda:0", "cuda:1")
    m._housekeeping.sample(m.device_readings())
    samples = {e.device: e for e in h.of(MemorySampled)}
    assert samples["cuda:0"].per_task == {"chat": 2 * GIB}
    assert samples["cuda:1"].per_task == {"chat": 2 * GIB}
    assert samples["cuda:1"].manager_bytes == 2 * GIB
    row = task_row(m._core.tasks["chat"], status, busy=False)
    assert row.device == "cuda:0+cuda:1"  # the panel's table shows it on both
    assert memory_sample(samples["cuda:1"]).per_task == {"chat": 2 * GIB}

    await asyncio.wait_for(m.unload_model("chat"), 15)
    (unloaded,) = h.of(ModelUnloaded)
    assert unloaded.freed_bytes == 4 * GIB  # verified on both devices
    assert not h.of(MemoryNotReturned)
    assert m._core.table.bytes_on("cuda:0") == m._core.table.bytes_on("cuda:1") == 0
    assert m.device_readings()["cuda:1"].used == 0


async def test_two_visible_cards_in_server_env_make_a_two_device_server(harness: Any) -> None:
    h = harness({"chat": tp_server(server_env={"CUDA_VISIBLE_DEVICES": "1,0"})})
    await asyncio.wait_for(h.manager.load_model("chat"), 15)
    assert "environment: CUDA_VISIBLE_DEVICES=1,0" in [e.line for e in h.of(ServerOutput)]
    assert h.manager.task_status("chat").devices == ("cuda:1", "cuda:0")
    assert (
        h.manager._core.table.bytes_on("cuda:0")
        == h.manager._core.table.bytes_on("cuda:1")
        == 2 * GIB
    )


async def test_room_is_made_on_both_devices_before_the_server_starts(harness: Any) -> None:
    # 8 GiB cards, 6 GiB of each taken by one model: the server's 3 GiB per card needs both gone.
    h = harness({
        "a": fake_task(6, "cuda:0"), "b": fake_task(6, "cuda:1"),
        "chat": tp_server("--tp", "2", vram_gb=6),
    }, TwoGpuProbe(server_gb={"cuda:0": 3, "cuda:1": 3}))  # fmt: skip
    m = h.manager
    await m.load_model("a")
    await m.load_model("b")
    await asyncio.wait_for(m.load_model("chat"), 15)
    evicted = [(e.task, e.device) for e in h.of(ModelEvicted)]
    assert sorted(evicted) == [("a", "cuda:0"), ("b", "cuda:1")]
    first_output = next(i for i, e in enumerate(h.events) if isinstance(e, ServerOutput))
    last_eviction = max(i for i, e in enumerate(h.events) if isinstance(e, ModelEvicted))
    assert last_eviction < first_output  # both made room before the server printed a line
    assert m._core.table.bytes_on("cuda:0") == m._core.table.bytes_on("cuda:1") == 3 * GIB


async def test_when_one_device_cannot_make_room_nothing_is_evicted_on_the_other(
    harness: Any,
) -> None:
    h = harness({
        "a": fake_task(6, "cuda:0"), "b": fake_task(6, "cuda:1", pinned=True),
        "chat": tp_server("--tp", "2", vram_gb=6),
    })  # fmt: skip
    m = h.manager
    await m.load_model("a")
    await m.load_model("b")
    with pytest.raises(InsufficientMemoryError, match=r"a server on 2 devices .*cuda:1.* pinned"):
        await asyncio.wait_for(m.load_model("chat"), 15)
    assert not h.of(ModelEvicted)  # a, which could have gone from cuda:0, is still there
    assert set(m.loaded_models) == {"a", "b"}
    assert not h.of(ServerOutput)  # the server never started
    assert m.devices.reserved("cuda:0") == m.devices.reserved("cuda:1") == 0


async def test_a_server_asking_for_more_gpus_than_the_machine_has_fails_clearly(
    harness: Any,
) -> None:
    h = harness({"chat": tp_server("--tp", "4")})
    with pytest.raises(ModelLoadError, match=r"needs 4 GPUs .* cuda:2, cuda:3 are not present"):
        await asyncio.wait_for(h.manager.load_model("chat"), 15)
    assert not h.of(ServerOutput)


# ----------------------------------------------------------------- the budget plan


async def test_the_budget_plan_counts_a_tp_server_on_both_devices(harness: Any) -> None:
    h = harness({"chat": tp_server("--tp", "2", vram_gb=6), "b": fake_task(6, "cuda:1")})
    report: dict[str, Any] = h.manager.validate_memory_budget()
    devices = report["devices"]
    assert devices["cuda:0"]["tasks"] == {"chat": 3.0}
    assert devices["cuda:1"]["tasks"] == {"chat": 3.0, "b": 6.0}
    assert devices["cuda:0"]["fits"] and not devices["cuda:1"]["fits"]  # 9 GiB on an 8 GiB card
    assert not report["valid"]
    assert report["model_requirements"]["chat"]["vram_gb"] == 6.0  # the total, as configured


async def test_the_budget_plan_skips_a_server_asking_for_more_gpus_than_there_are(
    harness: Any,
) -> None:
    h = harness({"chat": tp_server("--tp", "4")})
    report: dict[str, Any] = h.manager.validate_memory_budget()
    assert "cuda:2, cuda:3 are not present" in report["skipped"]["chat"]
    assert all(not d["tasks"] for d in report["devices"].values())


async def test_the_plan_counts_a_loaded_tp_server_as_held_on_both_devices(harness: Any) -> None:
    from vramdeck.manager.planning import held_bytes

    h = harness({"chat": tp_server("--tp", "2")})
    await asyncio.wait_for(h.manager.load_model("chat"), 15)
    held = held_bytes(h.manager.get_loaded_models())
    assert held == {"cuda:0": 2 * GIB, "cuda:1": 2 * GIB}


async def test_evicting_a_tp_server_for_room_on_one_device_frees_it_on_both(harness: Any) -> None:
    h = harness({"chat": tp_server("--tp", "2"), "big": fake_task(7, "cuda:1")})
    m = h.manager
    await asyncio.wait_for(m.load_model("chat"), 15)
    await asyncio.wait_for(m.load_model("big"), 15)  # 2 + 7 > 8 on cuda:1: the server goes
    (evicted,) = h.of(ModelEvicted)
    assert evicted.task == "chat" and evicted.freed_bytes == 4 * GIB  # both devices' parts
    assert not h.of(MemoryNotReturned)
    readings = m.device_readings()
    assert readings["cuda:0"].used == 0 and readings["cuda:1"].used == 7 * GIB
    assert m._core.table.bytes_on("cuda:0") == 0


async def test_an_auto_tp_server_starts_where_all_its_ranks_fit(harness: Any) -> None:
    # cuda:0 is the fuller card, so `auto` alone picks cuda:1, from which two cards do not exist.
    h = harness({"small": fake_task(1, "cuda:0"), "chat": tp_server("--tp", "2", device="auto")})
    await h.manager.load_model("small")
    await asyncio.wait_for(h.manager.load_model("chat"), 15)
    assert h.manager.task_status("chat").devices == ("cuda:0", "cuda:1")
    assert "environment: CUDA_VISIBLE_DEVICES=0,1" in [e.line for e in h.of(ServerOutput)]


class SleepingTwoGpuProbe(TwoGpuProbe):
    """As TwoGpuProbe, but a server that says it sleeps (the fake's real `GET /is_sleeping`)
    holds only its contexts, 0.25 GiB a device, as vLLM's sleep mode leaves them."""

    def __init__(self) -> None:
        super().__init__()
        self.url: str | None = None  # the server's, once it runs
        self.awake_bytes = dict(self.server_bytes)

    def _refresh(self) -> None:
        if self.url is None:
            return
        import json
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/is_sleeping", timeout=2) as reply:
                asleep = bool(json.load(reply)["is_sleeping"])
        except OSError:
            return
        held = dict.fromkeys(self.awake_bytes, GIB // 4) if asleep else self.awake_bytes
        self.server_bytes = dict(held)

    def read(self, device: str) -> Any:
        self._refresh()
        return super().read(device)

    def process_bytes(self, device: str, pids: Any) -> int | None:
        self._refresh()
        return super().process_bytes(device, pids)


async def test_a_tp_server_sleeps_when_both_devices_show_its_memory_back(harness: Any) -> None:
    """Each device is verified for its own part: the first alone shows half of the server's
    bytes come back, which must not read as a server that kept its memory."""
    probe = SleepingTwoGpuProbe()
    h = harness({"chat": tp_server("--tp", "2", sleep_level=1), "big": fake_task(7, "cuda:1")},
                probe)  # fmt: skip
    m = h.manager
    await asyncio.wait_for(m.load_model("chat"), 15)
    probe.url = m.loaded_models["chat"].url
    await asyncio.wait_for(m.load_model("big"), 15)  # 2 + 7 > 8 on cuda:1: the server sleeps
    assert m.task_state("chat") is TaskState.SLEEPING
    (slept,) = h.of(ModelSlept)
    assert slept.freed_bytes == 7 * GIB // 2  # 1.75 GiB back on each device, as the probe saw
    assert not h.of(MemoryNotReturned)
    readings = m.device_readings()
    assert readings["cuda:0"].used == GIB // 4
    assert readings["cuda:1"].used == 7 * GIB + GIB // 4
    await asyncio.wait_for(m.unload_model("big"), 15)
    await asyncio.wait_for(m.load_model("chat"), 15)  # woken, not started again
    assert [e.task for e in h.of(ModelWoken)] == ["chat"]
    assert m.task_state("chat") is TaskState.LOADED
