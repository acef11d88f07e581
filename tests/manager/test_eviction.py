"""Budget, LRU eviction, pins, leases and placement, on a fake probe and loader."""

from __future__ import annotations

import asyncio

import pytest

from vramdeck.manager import InsufficientMemoryError, ModelEvicted, ModelInUseError
from vramdeck.manager.config import GIB

THREE_TASKS = """
models:
  a: {options: {m: {model_id: model-a, vram_gb: 3}}}
  b: {options: {m: {model_id: model-b, vram_gb: 3}}}
  c: {options: {m: {model_id: model-c, vram_gb: 3}}}
inference: {offload_threshold: 0.7}
"""


def evictions(manager) -> list[ModelEvicted]:
    seen: list[ModelEvicted] = []
    manager.events.subscribe(seen.append, ModelEvicted)
    return seen


async def test_least_recently_used_goes_first(make_manager):
    m, probe, _ = make_manager(THREE_TASKS)  # 10 GiB device, limit 7 GiB: two 3 GiB models fit
    evicted = evictions(m)
    await m.load_model("a")
    await m.load_model("b")
    await m.get_model("a")  # a is now the most recently used
    assert m.get_lru_model() == "b"
    await m.load_model("c")
    assert [e.task for e in evicted] == ["b"]
    assert evicted[0].reason.startswith("room for c: idle ")  # and why it went (issue 12)
    assert evicted[0].reason.endswith(" by a reload")
    assert evicted[0].freed_bytes == 3 * GIB
    assert list(m.loaded_models) == ["a", "c"]
    assert probe.used["cuda:0"] == 6 * GIB


async def test_memory_of_other_processes_counts(make_manager):
    m, _, _ = make_manager(THREE_TASKS, other_gb={"cuda:0": 3.5})  # 3.5 + 3 fits 7, + 3 more not
    evicted = evictions(m)
    await m.load_model("a")
    await m.load_model("b")
    assert [e.task for e in evicted] == ["a"]


async def test_memory_budget_caps_the_managers_own_models(make_manager):
    m, _, _ = make_manager(THREE_TASKS.replace("offload_threshold: 0.7", "memory_budget_gb: 4"))
    evicted = evictions(m)
    await m.load_model("a")
    await m.load_model("b")
    assert [e.task for e in evicted] == ["a"]
    assert list(m.loaded_models) == ["b"]


async def test_no_room_raises_with_numbers_and_evicts_nothing(make_manager):
    m, _probe, loader = make_manager(
        """
        models:
          small: {options: {m: {model_id: small, vram_gb: 2}}}
          huge: {options: {m: {model_id: huge, vram_gb: 12}}}
        """
    )
    evicted = evictions(m)
    await m.load_model("small")
    with pytest.raises(InsufficientMemoryError) as err:
        await m.load_model("huge")
    message = str(err.value)
    assert "huge" in message and "cuda:0" in message and "12.00 GiB" in message
    assert "2.00 GiB can be evicted" in message
    assert evicted == []
    assert list(m.loaded_models) == ["small"]
    assert loader.loads == ["small"]
    assert m.task_state("huge") == "failed"


async def test_each_device_has_its_own_budget_and_lru(make_manager):
    m, _probe, _ = make_manager(
        """
        models:
          a: {options: {m: {model_id: a, vram_gb: 6, device: "cuda:0"}}}
          b: {options: {m: {model_id: b, vram_gb: 6, device: "cuda:1"}}}
          c: {options: {m: {model_id: c, vram_gb: 6, device: "cuda:1"}}}
        """,
        devices={"cuda:0": 10, "cuda:1": 10, "cpu": 32},
    )
    evicted = evictions(m)
    for task in ("a", "b", "c"):
        await m.load_model(task)
    assert [e.task for e in evicted] == ["b"]  # a on cuda:0 is older but on another device
    assert m.get_loaded_models()["a"]["device"] == "cuda:0"
    assert m.get_loaded_models()["c"]["device"] == "cuda:1"


async def test_auto_placement_picks_the_device_with_most_room(make_manager):
    m, _, _ = make_manager(
        """
        models:
          a: {options: {m: {model_id: a, vram_gb: 4}}}
          b: {options: {m: {model_id: b, vram_gb: 4}}}
        """,
        devices={"cuda:0": 10, "cuda:1": 24, "cpu": 32},
        other_gb={"cuda:1": 2},
    )
    await m.load_model("a")
    await m.load_model("b")
    devices = {t: i["device"] for t, i in m.get_loaded_models().items()}
    assert devices == {"a": "cuda:1", "b": "cuda:1"}  # 24 GiB card still has more room after a


async def test_host_when_there_is_no_cuda_device(make_manager):
    m, probe, _ = make_manager(THREE_TASKS, devices={"cpu": 16})
    await m.load_model("a")
    assert m.get_loaded_models()["a"]["device"] == "cpu"
    assert probe.used["cpu"] == 3 * GIB


async def test_missing_device_is_a_clear_error(make_manager):
    m, _, _ = make_manager(
        "models: {a: {options: {m: {model_id: a, vram_gb: 1, device: 'cuda:3'}}}}"
    )
    with pytest.raises(ValueError, match="device cuda:3 is not present here"):
        await m.load_model("a")


async def test_pinned_models_are_never_evicted(make_manager):
    m, _, _ = make_manager(THREE_TASKS.replace("a: {options", "a: {pinned: true, options"))
    evicted = evictions(m)
    await m.load_model("a")
    await m.load_model("b")
    await m.load_model("c")
    assert [e.task for e in evicted] == ["b"]
    m.set_pinned("c", True)
    with pytest.raises(InsufficientMemoryError):
        await m.load_model("b")
    assert m.get_lru_model() is None
    assert await m.evict_lru_model() is None


async def test_a_model_in_use_is_never_evicted(make_manager):
    m, _, _ = make_manager(THREE_TASKS)
    evicted = evictions(m)
    async with m.use("a") as model:
        assert m.task_state("a") == "in use"
        await m.load_model("b")
        await m.load_model("c")  # a is older but held: b goes
        assert not model.unloaded
        with pytest.raises(ModelInUseError, match="in use"):
            await m.unload_model("a")
    assert [e.task for e in evicted] == ["b"]
    assert m.task_state("a") == "loaded"
    await m.load_model("b")  # leaving use() counted as a use of a, so c is now the oldest
    assert [e.task for e in evicted] == ["b", "c"]


async def test_evict_lru_model_and_unload(make_manager):
    m, probe, loader = make_manager(THREE_TASKS)
    await m.load_model("a")
    await m.load_model("b")
    assert await m.evict_lru_model() == "a"
    await m.unload_model("b")
    await m.unload_model("c")  # not loaded: nothing to do
    assert m.loaded_models == {}
    assert probe.used["cuda:0"] == 0
    assert loader.unloads == ["model-a", "model-b"]


async def test_budget_checks_use_the_measured_size(make_manager):
    # The config guesses 1 GiB each; the models really take 4 GiB. Once a was measured, loading
    # it again next to b must evict b (4 + 4 > 7), which the estimate (4 + 1) would not.
    m, probe, _ = make_manager(
        """
        models:
          a: {options: {m: {model_id: a, vram_gb: 1}}}
          b: {options: {m: {model_id: b, vram_gb: 1}}}
        inference: {offload_threshold: 0.7}
        """,
        sizes={"a": 4 * GIB, "b": 4 * GIB},
    )
    evicted = evictions(m)
    await m.load_model("a")
    info = m.get_loaded_models()["a"]
    assert info["memory_usage_gb"] == pytest.approx(4.0)
    assert info["estimated_gb"] == pytest.approx(1.0)
    option = m.tasks["a"].get_selected_config()
    assert m.required_bytes(option, "cuda:0") == 4 * GIB
    await m.unload_model("a")
    await m.load_model("b")
    await m.load_model("a")
    assert [e.task for e in evicted] == ["b"]
    assert probe.used["cuda:0"] == 4 * GIB


async def test_suspected_leak_is_reported(make_manager):
    from vramdeck.manager import MemoryNotReturned

    m, probe, _ = make_manager(
        THREE_TASKS.replace("offload_threshold: 0.7", "evict_verify_timeout_s: 0.2")
    )
    probe.leak["cuda:0"] = 2 * GIB  # the unload keeps 2 of 3 GiB
    leaks: list[MemoryNotReturned] = []
    m.events.subscribe(leaks.append, MemoryNotReturned)
    await m.load_model("a")
    await m.unload_model("a")
    assert len(leaks) == 1
    assert leaks[0].expected_bytes == 3 * GIB and leaks[0].returned_bytes == 1 * GIB


async def test_eviction_waits_until_the_device_shows_memory_free(make_manager):
    # The unload gives memory back 0.1 s late (as a CUDA driver may): the load must wait, not fail.
    m, probe, loader = make_manager(THREE_TASKS)
    original_unload = loader.unload

    def late_unload(model, device):
        probe.leak[device] = model.nbytes
        original_unload(model, device)
        loop.call_soon_threadsafe(loop.call_later, 0.1, probe.add, device, -model.nbytes)
        probe.leak[device] = 0

    loop = asyncio.get_running_loop()
    loader.unload = late_unload
    await m.load_model("a")
    await m.load_model("b")
    await m.load_model("c")
    assert list(m.loaded_models) == ["b", "c"]
    assert probe.used["cuda:0"] == 6 * GIB


async def test_torchs_free_cached_blocks_count_as_free(make_manager, monkeypatch):
    # Freed blocks that torch's allocator keeps (a segment shared with another model) are free
    # for this process's next load: the budget check must not evict for them.
    import sys
    import types

    cuda = types.SimpleNamespace(
        is_initialized=lambda: True,
        memory_reserved=lambda i: 5 * GIB,
        memory_allocated=lambda i: 2 * GIB,
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    m, _, _ = make_manager(THREE_TASKS, other_gb={"cuda:0": 6.5})  # 6.5 GiB used, 3 of it cache
    evicted = evictions(m)
    assert m.devices.read("cuda:0").used == int(3.5 * GIB)
    await m.load_model("a")  # 3.5 + 3 ≤ 7: fits without touching anything
    assert evicted == [] and list(m.loaded_models) == ["a"]
