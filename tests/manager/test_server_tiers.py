"""Managed servers that sleep instead of stopping, through the MANAGER, against the real fake
server (its memory really goes and comes back): an evicted server sleeps and the next load
wakes it; one that keeps its memory is stopped; a sleep waits for a request in flight; one that
dies asleep is started cold."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.manager.fake_server import fake_command, gone
from vramdeck.manager import Ledger, ModelManager
from vramdeck.manager.events import (
    Event,
    ModelCrashed,
    ModelEvicted,
    ModelLoaded,
    ModelSlept,
    ModelWoken,
    ServerOutput,
    SleepFailed,
)
from vramdeck.manager.loaders import ServerHandle, TransformersLoader, VllmLoader
from vramdeck.manager.residency import Residency
from vramdeck.manager.status import TaskState

MB = 2**20
HOLD_MB = 60


def server(*flags: str, sleep_level: int | None = 1) -> dict[str, Any]:
    option: dict[str, Any] = {
        "model_id": "fake-model",
        "framework": "vllm",
        "vram_gb": 0.1,
        "device": "cpu",  # the fake holds host memory; a server_command may sleep off CUDA
        "server_command": fake_command("--hold-mb", str(HOLD_MB), *flags),
        "startup_timeout_s": 10,
        "stop_timeout_s": 2,
    }
    if sleep_level is not None:
        option["sleep_level"] = sleep_level
    return option


class Harness:
    def __init__(self, tmp_path: Path, chat: dict[str, Any], lm: dict[str, Any]) -> None:
        path = tmp_path / "models.yaml"
        models = {"chat": {"options": {"fake": chat}}, "lm": {"options": {"m": lm}}}
        # Room for one of them: loading either evicts the other.
        config = {"inference": {"memory_budget_gb": 0.1}, "models": models}
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.manager = ModelManager(
            path, loaders=[TransformersLoader(), VllmLoader()], ledger=Ledger(None)
        )
        self.events: list[Event] = []
        self.manager.events.subscribe(self.events.append)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if type(e) is kind]

    def starts(self) -> int:
        return sum(e.line.startswith("fake server pid") for e in self.of(ServerOutput))


@pytest.fixture
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300)).save_pretrained(
        path
    )
    # Its estimate fills the budget, so that it and the server never fit together.
    return {"model_id": str(path), "framework": "transformers", "vram_gb": 0.06, "device": "cpu"}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Harness] = []

    def make(chat: dict[str, Any], lm: dict[str, Any]) -> Harness:
        made.append(Harness(tmp_path, chat, lm))
        return made[-1]

    yield make
    for h in made:
        await asyncio.wait_for(h.manager.shutdown(), 20)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def test_an_evicted_server_sleeps_and_the_next_load_wakes_it(
    harness: Any, tiny_gpt2: dict[str, Any]
) -> None:
    h = harness(server(), tiny_gpt2)
    m = h.manager
    handle = await asyncio.wait_for(m.load_model("chat"), 15)
    assert isinstance(handle, ServerHandle)
    awake = rss(handle.pid)
    await asyncio.wait_for(m.load_model("lm"), 30)
    assert m.task_state("chat") is TaskState.SLEEPING and m.residency("chat") is Residency.SLEEPING
    assert handle.running and handle.asleep
    assert rss(handle.pid) < awake - 0.9 * HOLD_MB * MB  # its memory really went
    (sleep,) = h.of(ModelSlept)
    assert sleep.task == "chat" and sleep.bytes >= 0.9 * HOLD_MB * MB and sleep.level == 1
    (evicted,) = h.of(ModelEvicted)
    assert evicted.task == "chat" and evicted.reason.endswith("by waking its server")

    again = await asyncio.wait_for(m.load_model("chat"), 15)
    assert again is handle and h.starts() == 1  # woken, not started again
    assert m.task_state("chat") is TaskState.LOADED and not handle.asleep
    assert rss(handle.pid) >= awake - 10 * MB
    (wake,) = h.of(ModelWoken)
    assert wake.task == "chat" and wake.bytes >= 0.9 * HOLD_MB * MB
    assert [e.task for e in h.of(ModelLoaded)] == ["chat", "lm", "chat"]
    option = m.tasks["chat"].get_selected_config()
    assert m.ledger.restore_seconds(option, "cpu", Residency.SLEEPING.value) is not None
    await m.shutdown()
    assert gone(handle.pid)  # a sleeping or woken server is stopped at shutdown


async def test_a_server_that_keeps_its_memory_asleep_is_stopped(
    harness: Any, tiny_gpt2: dict[str, Any]
) -> None:
    h = harness(server("--sleep-keeps-memory"), tiny_gpt2)
    m = h.manager
    handle = await asyncio.wait_for(m.load_model("chat"), 15)
    await asyncio.wait_for(m.load_model("lm"), 30)
    (failed,) = h.of(SleepFailed)
    assert "still held" in failed.reason
    assert gone(handle.pid) and m.task_state("chat") is TaskState.UNLOADED
    assert h.of(ModelSlept) == []
    second = await asyncio.wait_for(m.load_model("chat"), 15)
    assert second.pid != handle.pid and h.starts() == 2
    assert "--enable-sleep-mode" not in psutil.Process(second.pid).cmdline()  # remembered


async def test_a_sleep_waits_for_the_request_in_flight(
    harness: Any, tiny_gpt2: dict[str, Any]
) -> None:
    h = harness(server(), tiny_gpt2)
    m = h.manager
    handle = await asyncio.wait_for(m.load_model("chat"), 15)
    done = asyncio.Event()
    with handle.requests.hold():  # a request is in flight on the server
        load = asyncio.ensure_future(m.load_model("lm"))
        await asyncio.wait_for(handle.requests.sleep_waiting.wait(), 15)
        assert not handle.asleep and not load.done() and h.of(ModelSlept) == []
        load.add_done_callback(lambda _: done.set())
    await asyncio.wait_for(done.wait(), 30)
    await load
    assert handle.asleep and m.task_state("chat") is TaskState.SLEEPING
    (sleep,) = h.of(ModelSlept)
    assert sleep.waited_s > 0


async def test_a_server_that_died_asleep_starts_cold(
    harness: Any, tiny_gpt2: dict[str, Any]
) -> None:
    h = harness(server(), tiny_gpt2)
    m = h.manager
    handle = await asyncio.wait_for(m.load_model("chat"), 15)
    await asyncio.wait_for(m.load_model("lm"), 30)
    assert handle.asleep
    crashed = asyncio.Event()
    m.events.subscribe(lambda e: crashed.set() if isinstance(e, ModelCrashed) else None)
    os.kill(handle.pid, signal.SIGKILL)
    await asyncio.wait_for(crashed.wait(), 5)  # noticed by the housekeeper, as when awake
    assert m.task_state("chat") is TaskState.FAILED and m.residency("chat") is Residency.OFF
    assert "while asleep" in (m.failure_reason("chat") or "")
    fresh = await asyncio.wait_for(m.load_model("chat"), 15)
    assert fresh.pid != handle.pid and h.starts() == 2 and h.of(ModelWoken) == []
    assert m.task_state("chat") is TaskState.LOADED
