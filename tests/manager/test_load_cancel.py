"""Cancel for a load in flight: a blocking loader stopped at its next progress report, or its model
freed the moment it lands; a real GPT-2 stopped while it reads its shards; a server stopped while
it starts. Every waiting caller gets LoadCancelledError and the task is back to unloaded."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes import FakeLoader, FakeProbe
from tests.manager.fake_server import fake_command, gone
from vramdeck.manager import (
    Event,
    LoadCancelled,
    LoadCancelledError,
    LoadFailed,
    LoadProgress,
    ModelLoaded,
    ModelLoading,
    ModelManager,
    ServerOutput,
    TaskState,
)
from vramdeck.manager.config import ModelConfig
from vramdeck.manager.loaders import ExternalAPILoader, LoadContext, TransformersLoader, VllmLoader

ONE = """
models:
  chat:
    options:
      a: {model_id: A, vram_gb: 2}
"""


@dataclasses.dataclass
class GatedLoader(FakeLoader):
    """A FakeLoader that waits at `gate` after its first report and then, if `reports_again`,
    reports once more before it allocates (a progress point where a cancelled load stops)."""

    reports_again: bool = True
    waiting: threading.Event = dataclasses.field(default_factory=threading.Event)

    def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        self.loads.append(option.model_id)
        ctx.progress(0.25, "reading")
        self.waiting.set()
        assert self.gate is not None and self.gate.wait(10)
        if self.reports_again:
            ctx.progress(0.75, "reading")
        self.probe.add(ctx.device, option.vram_bytes)
        from tests.fakes import FakeModel

        return FakeModel(option.model_id, ctx.device, option.vram_bytes, "worker")


def gated_manager(write_config, *, reports_again: bool) -> tuple[ModelManager, GatedLoader]:
    probe = FakeProbe({"cuda:0": 10.0, "cpu": 64.0})
    loader = GatedLoader(probe, gate=threading.Event(), reports_again=reports_again)
    m = ModelManager(write_config(ONE), probe=probe, loaders=[loader, ExternalAPILoader()])
    return m, loader


async def cancel_at_the_gate(m: ModelManager, loader: GatedLoader) -> tuple[bool, list[Any]]:
    """Two callers wait for one load; it is cancelled while the worker waits at the gate."""
    callers = [asyncio.ensure_future(m.load_model("chat")) for _ in range(2)]
    await asyncio.to_thread(loader.waiting.wait, 10)
    assert m.task_state("chat") is TaskState.LOADING
    cancelling = asyncio.ensure_future(m.cancel_load("chat"))
    await asyncio.sleep(0)  # one step: the cancel flag is set, the cancel waits for the load
    assert loader.gate is not None
    loader.gate.set()
    abandoned = await cancelling
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    return abandoned, outcomes


@pytest.mark.parametrize("reports_again", [True, False], ids=["stops", "freed-on-landing"])
async def test_a_cancelled_load_leaves_nothing_and_its_callers_are_told(
    write_config, reports_again: bool
) -> None:
    m, loader = gated_manager(write_config, reports_again=reports_again)
    events: list[Event] = []
    m.events.subscribe(events.append)
    try:
        abandoned, outcomes = await cancel_at_the_gate(m, loader)
        assert abandoned is True
        assert all(isinstance(o, LoadCancelledError) for o in outcomes), outcomes
        assert isinstance(outcomes[0], ValueError)  # the seed's kind of load error
        # Stopped at its next report, or loaded and freed at once: nothing is held either way.
        assert loader.unloads == ([] if reports_again else ["A"])
        assert loader.probe.used["cuda:0"] == 0
        assert m.devices.reserved("cuda:0") == 0
        assert m.loaded_models == {} and m.task_state("chat") is TaskState.UNLOADED
        assert m.failure_reason("chat") is None and m.load_progress("chat") is None
        kinds = [type(e) for e in events]
        assert LoadCancelled in kinds and LoadFailed not in kinds and ModelLoaded not in kinds
        cancelled = next(e for e in events if isinstance(e, LoadCancelled))
        assert (cancelled.task, cancelled.option, cancelled.device) == ("chat", "a", "cuda:0")
        assert await m.cancel_load("chat") is False  # nothing in flight any more
        loader.reports_again = True
        assert (await m.load_model("chat")).model_id == "A"  # and it loads again afterwards
    finally:
        await m.shutdown()


async def test_cancel_with_nothing_in_flight_is_false_and_an_unknown_task_an_error(
    write_config,
) -> None:
    m, loader = gated_manager(write_config, reports_again=True)
    try:
        assert await m.cancel_load("chat") is False
        with pytest.raises(ValueError, match="Invalid task type: nope"):
            await m.cancel_load("nope")
        assert loader.loads == []
    finally:
        await m.shutdown()


@pytest.fixture(scope="module")
def sharded_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2 of ≈22 MB saved in 9 safetensors shards, so a load reads in steps."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("models") / "gpt2-sharded"
    config = GPT2Config(n_layer=2, n_embd=384, n_head=2, vocab_size=5000, n_positions=64,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(path, max_shard_size="2MB")
    assert len(list(path.glob("*.safetensors"))) > 3
    return path


class PausingTransformers(TransformersLoader):
    """The real loader, paused once at its second report of bytes read until `proceed` is set.

    (Not `resume`: that name is the loader's own method, which a comeback calls.)
    """

    def __init__(self) -> None:
        self.paused, self.proceed = threading.Event(), threading.Event()
        self.reads = 0

    def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        def progress(fraction: float | None, stage: str) -> None:
            if fraction and fraction < 1:
                self.reads += 1  # reports come one at a time (under the reading's lock)
                if self.reads == 2:
                    self.paused.set()
                    assert self.proceed.wait(10)
            ctx.progress(fraction, stage)

        return super().load(option, dataclasses.replace(ctx, progress=progress))


async def test_a_real_load_stops_while_it_reads_its_shards(write_config, sharded_gpt2) -> None:
    loader = PausingTransformers()
    path = write_config(
        f"""
        models:
          generate:
            options:
              gpt2: {{model_id: "{sharded_gpt2}", framework: transformers, vram_gb: 0.03}}
        """
    )
    m = ModelManager(path, loaders=[loader, ExternalAPILoader()])
    progress: list[LoadProgress] = []
    m.events.subscribe(progress.append, LoadProgress)
    try:
        load = asyncio.ensure_future(m.load_model("generate"))
        await asyncio.to_thread(loader.paused.wait, 10)
        cancelling = asyncio.ensure_future(m.cancel_load("generate"))
        await asyncio.sleep(0)  # one step: the flag is set while the worker is paused mid-read
        loader.proceed.set()
        assert await cancelling is True
        with pytest.raises(LoadCancelledError, match="generate: the load was cancelled"):
            await load
        assert m.loaded_models == {} and m.task_state("generate") is TaskState.UNLOADED
        read = [e.fraction for e in progress if e.fraction is not None]
        assert read and max(read) < 1.0  # it never finished reading
        model = await m.load_model("generate")  # a load after the cancel reads it all
        assert next(model.parameters()).device.type == "cpu"
    finally:
        await m.shutdown()


async def test_a_starting_server_is_stopped(write_config) -> None:
    option = {
        "model_id": "fake-model",
        "framework": "vllm",
        "vram_gb": 0.1,
        "device": "cpu",
        "server_command": fake_command("--hold-mb", "20", "--start-delay", "30"),
        "startup_timeout_s": 60,
        "stop_timeout_s": 2,
    }
    config = {
        "inference": {"memory_budget_gb": 1.0},
        "models": {"chat": {"options": {"f": option}}},
    }
    m = ModelManager(write_config(yaml.safe_dump(config)), loaders=[VllmLoader()])
    started = asyncio.Event()
    pids: list[int] = []

    def on_output(event: Event) -> None:
        assert isinstance(event, ServerOutput)
        if event.line.startswith("fake server pid"):
            pids.append(int(event.line.split()[3]))
            started.set()

    m.events.subscribe(on_output, ServerOutput)
    cancelled: list[LoadCancelled] = []
    m.events.subscribe(cancelled.append, LoadCancelled)
    try:
        load = asyncio.ensure_future(m.load_model("chat"))
        await asyncio.wait_for(started.wait(), 15)
        assert await m.cancel_load("chat") is True
        with pytest.raises(LoadCancelledError):
            await load
        assert pids and gone(pids[0])  # the process was stopped before cancel_load returned
        assert [e.task for e in cancelled] == ["chat"]
        assert m.task_state("chat") is TaskState.UNLOADED and m.loaded_models == {}
    finally:
        await m.shutdown()


TWO = """
models:
  a: {options: {a: {model_id: A, vram_gb: 6}}}
  b: {options: {b: {model_id: B, vram_gb: 6}}}
"""


async def test_a_load_cancelled_while_it_waits_for_the_device_evicts_nothing(make_manager):
    m, _, loader = make_manager(TWO)
    try:
        await m.load_model("a")
        loading = asyncio.Event()

        def on_loading(event: ModelLoading) -> None:
            if event.task == "b":
                loading.set()

        m.events.subscribe(on_loading, ModelLoading)
        lock = m.devices.lock("cuda:0")
        await lock.acquire()  # as if another eviction were deciding on this device
        load = asyncio.ensure_future(m.load_model("b"))
        await loading.wait()
        await asyncio.sleep(0)  # one step: b's load waits for the lock, to make room for itself
        assert lock._waiters
        cancelling = asyncio.ensure_future(m.cancel_load("b"))
        await asyncio.sleep(0)  # one step: the flag is set
        lock.release()
        assert await cancelling is True
        with pytest.raises(LoadCancelledError):
            await load
        assert list(m.loaded_models) == ["a"] and loader.unloads == []  # a was not evicted
        assert loader.loads == ["A"] and m.task_state("b") is TaskState.UNLOADED
    finally:
        await m.shutdown()
