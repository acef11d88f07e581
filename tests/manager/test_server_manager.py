"""The ModelManager running fake servers: events, accounting, eviction both ways, crashes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes import FakeProbe
from tests.manager.fake_server import fake_command, gone, wait_gone
from vramdeck.manager import (
    Event,
    Ledger,
    LoadFailed,
    ModelCrashed,
    ModelEvicted,
    ModelLoaded,
    ModelLoadError,
    ModelManager,
    ServerOutput,
)
from vramdeck.manager.loaders import (
    Loader,
    ServerHandle,
    SglangLoader,
    TransformersLoader,
    VllmLoader,
    live_server_pids,
)

MB = 2**20


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=500, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(path)
    return str(path)


def server_option(*flags: str, **fields: Any) -> dict[str, Any]:
    return {
        "model_id": "fake-model",
        "framework": "vllm",
        "vram_gb": 0.1,
        "device": "cpu",  # the fake holds host memory, also where there is a GPU
        "server_command": fake_command("--hold-mb", "60", *flags),
        "startup_timeout_s": 10,
        "stop_timeout_s": 2,
        **fields,
    }


class Harness:
    """A manager with the real loaders, a config written to disk, and every event it emitted."""

    def __init__(self, tmp_path: Path, models: dict[str, Any], budget_gb: float = 1.0) -> None:
        path = tmp_path / "models.yaml"
        config = {"inference": {"memory_budget_gb": budget_gb}, "models": models}
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        loaders: list[Loader] = [TransformersLoader(), VllmLoader(), SglangLoader()]
        self.manager = ModelManager(path, loaders=loaders, ledger=Ledger(None))
        self.events: list[Event] = []
        self.manager.events.subscribe(self.events.append)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[Event], timeout_s: float = 5.0) -> Any:
        end = time.monotonic() + timeout_s
        while not self.of(kind):
            assert time.monotonic() < end, f"no {kind.__name__} within {timeout_s} s"
            await asyncio.sleep(0.02)
        return self.of(kind)[0]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Harness] = []

    def make(models: dict[str, Any], budget_gb: float = 1.0) -> Harness:
        made.append(Harness(tmp_path, models, budget_gb))
        return made[-1]

    yield make
    for h in made:
        await asyncio.wait_for(h.manager.shutdown(), 20)


def task(**options: dict[str, Any]) -> dict[str, Any]:
    return {"options": options}


async def test_a_server_loads_as_a_model_and_unloads(harness: Any) -> None:
    h = harness({"chat": task(fake=server_option())})
    handle = await asyncio.wait_for(h.manager.load_model("chat"), 15)
    assert isinstance(handle, ServerHandle)
    loaded = h.of(ModelLoaded)[0]
    assert loaded.device == "cpu"
    assert 60 * MB < loaded.measured_bytes < 200 * MB  # the server's RSS, not the estimate
    assert h.manager.model_memory_usage["chat"] == loaded.measured_bytes
    assert h.manager.ledger.measured_bytes(h.manager.tasks["chat"].options["fake"], "cpu")
    lines = [e.line for e in h.of(ServerOutput)]
    assert any(line.startswith("Application startup complete.") for line in lines)
    await h.manager.unload_model("chat")
    assert gone(handle.pid)
    assert h.manager.get_loaded_models() == {}


async def test_concurrent_loads_start_one_server(harness: Any) -> None:
    h = harness({"chat": task(fake=server_option("--start-delay", "0.4"))})
    handles = await asyncio.wait_for(
        asyncio.gather(*(h.manager.load_model("chat") for _ in range(4))), 15
    )
    assert len({id(x) for x in handles}) == 1
    starts = [e for e in h.of(ServerOutput) if e.line.startswith("fake server pid")]
    assert len(starts) == 1
    assert live_server_pids() == [handles[0].pid]


async def test_output_and_progress_reach_the_events(harness: Any) -> None:
    h = harness({"chat": task(fake=server_option("--start-delay", "0.4"))})
    seen: list[tuple[float, str]] = []
    h.manager.events.subscribe(
        lambda e: seen.append((time.monotonic(), e.line)) if isinstance(e, ServerOutput) else None
    )
    await asyncio.wait_for(h.manager.load_model("chat"), 15)
    assert [line for _, line in seen if "Loading weights" in line] == [
        "Loading weights: 0% (0/4)",
        "Loading weights: 25% (1/4)",
        "Loading weights: 50% (2/4)",
        "Loading weights: 75% (3/4)",
    ]
    # Lines arrive while the server starts, not all at the end.
    assert seen[-1][0] - seen[0][0] > 0.25


async def test_a_failed_start_gives_load_failed_with_the_output(harness: Any) -> None:
    h = harness({"chat": task(fake=server_option("--fail-after", "0.2", "--spawn-child"))})
    with pytest.raises(ModelLoadError, match="exited with exit code 3"):
        await asyncio.wait_for(h.manager.load_model("chat"), 15)
    failed = h.of(LoadFailed)[0]
    assert "simulated start failure: CUDA out of memory" in failed.reason
    assert h.manager.task_state("chat") == "failed"
    pids = [int(e.line.split()[-1]) for e in h.of(ServerOutput) if e.line.startswith("child pid")]
    assert wait_gone(pids, 2) == []
    assert h.manager.get_loaded_models() == {}


async def test_a_crash_is_noticed_and_its_accounting_freed(harness: Any) -> None:
    h = harness({"chat": task(fake=server_option("--crash-after", "0.5", "--spawn-child"))})
    handle = await asyncio.wait_for(h.manager.load_model("chat"), 15)
    child = [pid for pid in handle.process.pids() if pid != handle.pid]
    crashed = await h.wait_for(ModelCrashed, 5)
    exited_at = handle.process.exited_at
    assert exited_at is not None
    assert time.monotonic() - exited_at < 1.0 + 0.2  # noticed within the housekeeper's tick
    assert crashed.task == "chat" and crashed.exit_code == 3
    assert crashed.last_output[-1] == "fatal: simulated crash, exiting with 3"
    assert "chat" not in h.manager.loaded_models
    assert h.manager.model_memory_usage == {}
    assert h.manager.task_state("chat") == "failed"
    assert wait_gone([handle.pid, *child], 2) == []


async def test_the_footprint_stays_current(harness: Any) -> None:
    h = harness({"chat": task(fake=server_option("--grow-mb", "50", "--grow-after", "0.2"))})
    await asyncio.wait_for(h.manager.load_model("chat"), 15)
    first = h.manager.model_memory_usage["chat"]
    end = time.monotonic() + 3
    while h.manager.model_memory_usage.get("chat", 0) < first + 45 * MB:
        assert time.monotonic() < end, "the growth never showed in the accounting"
        await asyncio.sleep(0.05)
    assert h.manager.get_loaded_models()["chat"]["measured_bytes"] >= first + 45 * MB


async def test_a_server_is_evicted_for_an_in_process_model(harness: Any, tiny_gpt2: str) -> None:
    gpt2 = {"model_id": tiny_gpt2, "framework": "transformers", "vram_gb": 0.05, "device": "cpu"}
    h = harness({"chat": task(fake=server_option()), "lm": task(gpt2=gpt2)}, budget_gb=0.1)
    handle = await asyncio.wait_for(h.manager.load_model("chat"), 15)
    await asyncio.wait_for(h.manager.load_model("lm"), 30)
    evicted = h.of(ModelEvicted)
    assert [e.task for e in evicted] == ["chat"]
    assert evicted[0].reason.startswith("room for lm: idle ")
    assert gone(handle.pid)
    assert list(h.manager.loaded_models) == ["lm"]


async def test_an_in_process_model_is_evicted_for_a_server(harness: Any, tiny_gpt2: str) -> None:
    gpt2 = {"model_id": tiny_gpt2, "framework": "transformers", "vram_gb": 0.05, "device": "cpu"}
    h = harness({"chat": task(fake=server_option()), "lm": task(gpt2=gpt2)}, budget_gb=0.1)
    await asyncio.wait_for(h.manager.load_model("lm"), 30)
    handle = await asyncio.wait_for(h.manager.load_model("chat"), 15)
    assert [e.task for e in h.of(ModelEvicted)] == ["lm"]
    assert list(h.manager.loaded_models) == ["chat"]
    assert await handle.health()


async def test_switching_options_stops_the_old_server(harness: Any) -> None:
    h = harness(
        {"chat": {"selected": "a", "options": {"a": server_option(), "b": server_option()}}}
    )
    first = await asyncio.wait_for(h.manager.load_model("chat"), 15)
    await asyncio.wait_for(h.manager.set_selected_model("chat", "b"), 15)
    second = h.manager.loaded_models["chat"]
    assert gone(first.pid) and not gone(second.pid)


async def test_shutdown_stops_every_server(harness: Any) -> None:
    h = harness(
        {
            "chat": task(fake=server_option("--spawn-child")),
            "code": task(fake=server_option(framework="sglang")),
        }
    )
    handles = [await asyncio.wait_for(h.manager.load_model(t), 15) for t in ("chat", "code")]
    pids = [pid for x in handles for pid in x.process.pids()]
    assert len(pids) == 3
    await asyncio.wait_for(h.manager.shutdown(), 15)
    assert wait_gone(pids, 1) == []
    assert live_server_pids() == []


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc/PID/environ")
async def test_the_configs_inherit_env_reaches_the_server_and_nothing_else(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "canary-anthropic-key")
    monkeypatch.setenv("MY_TOOL_HOME", "/opt/tool")
    h = harness({"chat": task(fake=server_option(inherit_env=["MY_TOOL_HOME"]))})
    handle = await asyncio.wait_for(h.manager.load_model("chat"), 15)
    raw = Path(f"/proc/{handle.pid}/environ").read_bytes().split(b"\0")  # noqa: ASYNC240
    assert b"MY_TOOL_HOME=/opt/tool" in raw
    assert not any(item.startswith(b"ANTHROPIC_API_KEY=") for item in raw)


class ServerCountingProbe(FakeProbe):
    """A fake probe that says what a server's processes hold, and records whom it was asked."""

    HELD = 77 * MB

    def __init__(self) -> None:
        super().__init__({"cpu": 4})
        self.asked: list[list[int]] = []

    def process_bytes(self, device: str, pids: Iterable[int]) -> int | None:
        self.asked.append(sorted(pids))
        return self.HELD

    def attributes_frees(self, device: str) -> bool:
        return False


async def test_a_server_is_measured_with_the_managers_probe(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {"chat": task(fake=server_option())}}))
    probe = ServerCountingProbe()
    manager = ModelManager(path, probe=probe, loaders=[VllmLoader()], ledger=Ledger(None))
    try:
        handle = await asyncio.wait_for(manager.load_model("chat"), 15)
        assert manager.model_memory_usage["chat"] == ServerCountingProbe.HELD
        assert probe.asked and all(handle.pid in pids for pids in probe.asked)
    finally:
        await asyncio.wait_for(manager.shutdown(), 15)
