"""Issue 9 §3: a switch whose caller was cancelled, a reload under a held model, and a load that
measures more than its estimate. Ordered with events and gates, never with sleeps."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from vramdeck.manager import (
    BudgetExceeded,
    ModelEvicted,
    ModelInUseError,
    ModelLoading,
    RemovalReason,
    SwitchFailed,
)
from vramdeck.manager.config import GIB

SWITCHABLE = """
models:
  chat:
    selected: small
    options:
      small: {model_id: chat-small, vram_gb: 2}
      broken: {model_id: chat-broken, vram_gb: 1}
      big: {model_id: chat-big, vram_gb: 3}
"""


async def test_a_failed_switch_whose_caller_was_cancelled_is_collected(
    make_manager, caplog: pytest.LogCaptureFixture
):
    gate = threading.Event()
    gate.set()
    m, probe, _ = make_manager(SWITCHABLE, fail={"chat-broken"}, gate=gate)
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: unhandled.append(ctx))
    broken_started, failed = asyncio.Event(), asyncio.Event()
    seen: list[SwitchFailed] = []

    def on_loading(event: ModelLoading) -> None:
        if event.option == "broken":
            broken_started.set()

    def on_failed(event: SwitchFailed) -> None:
        seen.append(event)
        failed.set()

    m.events.subscribe(on_loading, ModelLoading)
    m.events.subscribe(on_failed, SwitchFailed)
    await m.load_model("chat")
    gate.clear()  # the broken option's load waits in the worker
    caller = asyncio.ensure_future(m.set_selected_model("chat", "broken"))
    await broken_started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()
    await asyncio.wait_for(failed.wait(), 10)  # a bound, so a regression fails instead of hanging
    await m.load_model("chat")  # after the restore: the old option serves again
    del caller
    gc.collect()
    await asyncio.sleep(0)  # let the loop run what a collected task reports
    assert unhandled == []
    assert "never retrieved" not in caplog.text
    assert [(e.task, e.old, e.new) for e in seen] == [("chat", "small", "broken")]
    assert "cannot load chat-broken" in seen[0].reason
    warnings = [r for r in caplog.records if "switching chat to broken failed" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert m.tasks["chat"].selected == "small"
    assert m.loaded_models["chat"].model_id == "chat-small"
    assert probe.used["cuda:0"] == 2 * GIB


def select_on_disk(path: Path, option: str) -> None:
    path.write_text(path.read_text().replace("selected: small", f"selected: {option}"))


async def test_reload_waits_for_the_holder_of_a_model_it_must_free(make_manager):
    m, probe, _ = make_manager(SWITCHABLE)
    async with m.use("chat") as model:
        select_on_disk(m.config_path, "big")
        reload = asyncio.ensure_future(m.reload_config())
        for _ in range(5):  # the reload runs up to its wait for the holder
            await asyncio.sleep(0)
        assert not reload.done()
        assert not model.unloaded and m.loaded_models["chat"] is model
    await reload
    assert model.unloaded and "chat" not in m.loaded_models
    assert m.tasks["chat"].selected == "big"
    assert probe.used["cuda:0"] == 0


async def test_reload_gives_up_on_a_model_held_too_long_and_changes_nothing(make_manager):
    m, _, _ = make_manager(SWITCHABLE)
    async with m.use("chat") as model:
        select_on_disk(m.config_path, "big")
        with pytest.raises(ModelInUseError, match="chat is still in use by 1 caller"):
            await m.reload_config(lease_wait_s=0.01)
        assert not model.unloaded and m.loaded_models["chat"] is model
    assert m.tasks["chat"].selected == "small"  # the current config stays in force


UNDERESTIMATED = """
models:
  a: {options: {m: {model_id: model-a, vram_gb: 3}}}
  b: {options: {m: {model_id: model-b, vram_gb: 1}}}
inference: {offload_threshold: 0.7}
"""


async def test_a_load_that_measures_more_than_its_estimate_evicts_others(make_manager):
    # 10 GiB device, 7 GiB limit: b's estimate (1) fits beside a (3), but b really takes 6.
    m, probe, _ = make_manager(UNDERESTIMATED, sizes={"model-b": 6 * GIB})
    evicted: list[ModelEvicted] = []
    m.events.subscribe(evicted.append, ModelEvicted)
    await m.load_model("a")
    await m.load_model("b")
    assert [(e.task, e.cause) for e in evicted] == [("a", RemovalReason.OVER_BUDGET)]
    assert evicted[0].reason.startswith("over budget after b took more than estimated: idle ")
    assert list(m.loaded_models) == ["b"] and probe.used["cuda:0"] == 6 * GIB


async def test_over_budget_with_nothing_to_evict_is_reported(make_manager):
    m, probe, _ = make_manager(UNDERESTIMATED, sizes={"model-b": 6 * GIB})
    exceeded: list[BudgetExceeded] = []
    m.events.subscribe(exceeded.append, BudgetExceeded)
    await m.load_model("a")
    m.set_pinned("a", True)
    await m.load_model("b")
    assert list(m.loaded_models) == ["a", "b"] and probe.used["cuda:0"] == 9 * GIB
    (event,) = exceeded
    assert (event.task, event.device, event.held_bytes) == ("b", "cuda:0", 9 * GIB)
    assert event.budget_bytes == int(0.7 * 10 * GIB)
    assert "b took more than its estimate" in event.reason and "9.00 GiB" in event.reason
