"""Single-flight loads, rollback on failure, idle unload, switching, threads, shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from vramdeck.manager import (
    Event,
    LoadFailed,
    LoadProgress,
    ModelLoaded,
    ModelLoadError,
    ModelLoading,
    ModelUnloaded,
    SelectionChanged,
)
from vramdeck.manager.config import GIB

TWO_OPTIONS = """
models:
  chat:
    selected: small
    options:
      small: {model_id: chat-small, vram_gb: 2}
      big: {model_id: chat-big, vram_gb: 5}
      broken: {model_id: chat-broken, vram_gb: 1}
  vision: {options: {m: {model_id: vision, vram_gb: 3}}}
"""


async def test_fifty_concurrent_callers_share_one_load(make_manager):
    m, _, loader = make_manager(TWO_OPTIONS, delay_s=0.05)
    results = await asyncio.gather(*(m.get_model("chat") for _ in range(50)))
    assert loader.loads == ["chat-small"]
    assert all(r is results[0] for r in results)


async def test_a_cancelled_caller_does_not_abandon_the_load(make_manager):
    m, probe, loader = make_manager(TWO_OPTIONS, gate=threading.Event())
    started = asyncio.Event()
    m.events.subscribe(lambda e: started.set(), ModelLoading)
    first = asyncio.ensure_future(m.load_model("chat"))
    await started.wait()  # the load waits at the gate
    first.cancel()
    loader.gate.set()
    model = await m.load_model("chat")  # joins the same flight, which finished
    assert loader.loads == ["chat-small"]
    assert m.loaded_models["chat"] is model
    assert probe.used["cuda:0"] == 2 * GIB


async def test_failed_load_leaves_no_trace(make_manager):
    m, probe, _loader = make_manager(TWO_OPTIONS, fail={"chat-broken"})
    seen: list[Event] = []
    m.events.subscribe(seen.append)
    await m.set_selected_model("chat", "broken")
    with pytest.raises(ModelLoadError, match="cannot load chat-broken"):
        await m.load_model("chat")
    failed = [e for e in seen if isinstance(e, LoadFailed)]
    assert len(failed) == 1 and "cannot load chat-broken" in failed[0].reason
    assert m.loaded_models == {} and m.model_memory_usage == {}
    assert probe.used["cuda:0"] == 0
    assert m.devices.reserved("cuda:0") == 0
    assert m.task_state("chat") == "failed"
    assert "cannot load" in (m.failure_reason("chat") or "")
    # The manager stays usable, and a later good load clears the failure.
    await m.set_selected_model("chat", "small")
    await m.load_model("chat")
    assert m.task_state("chat") == "loaded" and m.failure_reason("chat") is None


async def test_switching_a_loaded_task_loads_the_new_model_and_frees_the_old(make_manager):
    m, probe, _loader = make_manager(TWO_OPTIONS)
    seen: list[SelectionChanged | ModelUnloaded | ModelLoaded] = []
    m.events.subscribe(seen.append, SelectionChanged, ModelUnloaded, ModelLoaded)
    await m.load_model("chat")
    await m.set_selected_model("chat", "big")
    assert m.tasks["chat"].selected == "big"
    assert m.config["models"]["chat"]["selected"] == "big"
    assert m.get_loaded_models()["chat"]["model_id"] == "chat-big"
    assert probe.used["cuda:0"] == 5 * GIB
    kinds = [(e.kind, getattr(e, "reason", "")) for e in seen]
    assert kinds == [
        ("ModelLoaded", ""),
        ("ModelUnloaded", "switching to big"),
        ("SelectionChanged", ""),
        ("ModelLoaded", ""),
    ]


async def test_switching_to_a_broken_model_restores_the_old_one(make_manager):
    m, probe, _ = make_manager(TWO_OPTIONS, fail={"chat-broken"})
    await m.load_model("chat")
    with pytest.raises(ModelLoadError):
        await m.set_selected_model("chat", "broken")
    assert m.tasks["chat"].selected == "small"
    assert m.get_loaded_models()["chat"]["model_id"] == "chat-small"
    assert probe.used["cuda:0"] == 2 * GIB


async def test_unknown_names_are_clear_errors(make_manager):
    m, _, _ = make_manager(TWO_OPTIONS)
    # The seed's first words, then the valid names.
    with pytest.raises(
        ValueError, match=r"^Invalid model name: huge for task chat \(options: small, big, broken\)"
    ):
        await m.set_selected_model("chat", "huge")
    with pytest.raises(ValueError, match=r"^Invalid task type: audio \(tasks: chat, vision\)"):
        await m.load_model("audio")
    with pytest.raises(ValueError, match=r"^Invalid task type: audio"):
        m.is_external_api("audio")
    assert m.get_model_config("audio") is None


async def test_idle_models_are_unloaded(make_manager):
    m, _probe, _ = make_manager(TWO_OPTIONS + "inference: {idle_unload_s: 0.2}\n")
    m._housekeeper.interval_s = 0.05
    unloaded: list[ModelUnloaded] = []
    m.events.subscribe(unloaded.append, ModelUnloaded)
    await m.load_model("chat")
    async with m.use("vision"):
        await asyncio.sleep(0.6)
        assert "vision" in m.loaded_models  # held: never idle-unloaded
    assert [e.task for e in unloaded] == ["chat"]
    assert unloaded[0].reason == "idle for 0.2 s"
    await m.shutdown()


async def test_loads_run_in_the_devices_worker_and_events_on_the_loop(make_manager):
    m, _, loader = make_manager(TWO_OPTIONS)
    threads: list[str] = []
    m.events.subscribe(lambda e: threads.append(threading.current_thread().name))
    seen: list[LoadProgress | ModelLoading] = []
    m.events.subscribe(seen.append, LoadProgress, ModelLoading)
    await m.load_model("chat")
    await m.unload_model("chat")
    await asyncio.sleep(0)  # deliver progress events that the worker queued
    assert loader.threads == ["vramdeck-cuda0_0", "vramdeck-cuda0_0"]
    assert set(threads) == {threading.main_thread().name}
    assert [e.kind for e in seen] == ["ModelLoading", "LoadProgress"]
    progress = seen[1]
    assert isinstance(progress, LoadProgress)
    assert progress.fraction == 0.5 and progress.stage == "half way"


async def test_warmup_loads_every_selected_model_when_enabled(make_manager):
    m, _, loader = make_manager(TWO_OPTIONS)
    await m.warmup_models()  # warmup_on_startup is off: nothing
    assert loader.loads == []
    await m.warmup_models(force=True)
    assert sorted(m.loaded_models) == ["chat", "vision"]
    m2, _, loader2 = make_manager(TWO_OPTIONS + "inference: {warmup_on_startup: true}\n")
    await m2.warmup_models()
    assert loader2.loads == ["chat-small", "vision"]


async def test_shutdown_unloads_everything_and_closes(make_manager):
    m, probe, _loader = make_manager(TWO_OPTIONS.replace("chat:\n", "chat:\n    pinned: true\n"))
    await m.load_model("chat")
    await m.load_model("vision")
    m.start_monitor(0.01)
    await m.shutdown()
    assert m.loaded_models == {}
    assert probe.used["cuda:0"] == 0
    assert m.devices.executors == {}
    assert not m.monitor.running
    with pytest.raises(RuntimeError, match="shut down"):
        await m.load_model("chat")
    await m.shutdown()  # idempotent


async def test_monitor_samples_every_device(make_manager):
    from vramdeck.manager import MemorySampled

    m, _, _ = make_manager(TWO_OPTIONS, devices={"cuda:0": 10, "cpu": 8})
    samples: list[MemorySampled] = []
    three = asyncio.Event()

    def sampled(event: MemorySampled) -> None:
        samples.append(event)
        if sum(s.device == "cuda:0" for s in samples) >= 3:
            three.set()

    m.events.subscribe(sampled, MemorySampled)
    await m.load_model("chat")
    m.start_monitor(0.02)
    await asyncio.wait_for(three.wait(), 10)
    await m.shutdown()
    gpu = [s for s in samples if s.device == "cuda:0"]
    assert len(gpu) >= 3 and {s.device for s in samples} == {"cuda:0", "cpu"}
    assert gpu[0].per_task == {"chat": 2 * GIB} and gpu[0].manager_bytes == 2 * GIB
    # offload_threshold's default, the original's 0.85
    assert gpu[0].total_bytes == 10 * GIB and gpu[0].budget_bytes == int(0.85 * 10 * GIB)
    assert gpu[0].threshold_bytes == int(0.85 * 10 * GIB) and gpu[0].memory_budget_bytes is None


async def test_reload_config_keeps_matching_models_and_rejects_bad_files(
    make_manager, write_config
):
    from vramdeck.manager import ConfigError

    m, _, _ = make_manager(TWO_OPTIONS)
    await m.load_model("chat")
    await m.load_model("vision")
    path = m.config_path
    path.write_text(TWO_OPTIONS.replace("vision: {options: {m:", "audio: {options: {m:"))
    await m.reload_config()
    assert list(m.loaded_models) == ["chat"] and "audio" in m.tasks
    path.write_text("models: [oops")
    with pytest.raises(ConfigError, match="invalid YAML"):
        await m.reload_config()
    assert "audio" in m.tasks and list(m.loaded_models) == ["chat"]


async def test_subscribers_see_the_outcome_in_task_state(make_manager):
    m, _, _ = make_manager(TWO_OPTIONS, fail={"chat-broken"})
    states: list[tuple[str, str]] = []
    m.events.subscribe(
        lambda e: states.append((e.kind, m.task_state(e.task))), ModelLoaded, LoadFailed
    )
    await m.load_model("chat")
    with pytest.raises(ModelLoadError):
        await m.set_selected_model("chat", "broken")  # fails, restores small
    assert states == [
        ("ModelLoaded", "loaded"),
        ("LoadFailed", "failed"),
        ("ModelLoaded", "loaded"),
    ]


async def test_a_failure_belongs_to_the_option_that_failed(make_manager):
    m, _, _ = make_manager(TWO_OPTIONS, fail={"chat-broken"})
    await m.set_selected_model("chat", "broken")
    with pytest.raises(ModelLoadError):
        await m.load_model("chat")
    assert m.task_state("chat") == "failed"
    await m.set_selected_model("chat", "big")
    assert m.task_state("chat") == "unloaded" and m.failure_reason("chat") is None
    await m.set_selected_model("chat", "broken")  # it failed before: it still says so
    assert m.task_state("chat") == "failed"


async def test_unload_events_name_the_option(make_manager):
    m, _, _ = make_manager(TWO_OPTIONS)
    seen: list[ModelUnloaded] = []
    m.events.subscribe(seen.append, ModelUnloaded)
    await m.load_model("chat")
    await m.unload_model("chat")
    assert [(e.task, e.option, e.model_id) for e in seen] == [("chat", "small", "chat-small")]


def test_a_model_id_with_an_unset_variable_is_unavailable(make_manager, monkeypatch):
    monkeypatch.delenv("VRAMDECK_NOWHERE", raising=False)
    m, _, _ = make_manager("models: {t: {options: {a: {model_id: '${VRAMDECK_NOWHERE}/gpt2'}}}}\n")
    reason = m.tasks["t"].options["a"].unavailable_reason
    assert reason == "model_id '${VRAMDECK_NOWHERE}/gpt2' uses $VRAMDECK_NOWHERE, which is not set"
    monkeypatch.setenv("VRAMDECK_NOWHERE", "/models")
    assert m.tasks["t"].options["a"].unset_variables_reason() is None
