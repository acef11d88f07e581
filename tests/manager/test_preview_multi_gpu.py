"""Previews of a server on several GPUs against the real actions: room planned on each device it
spans, as the load makes it (`manager/spread.py`), and a spread server's eviction freeing both.

The server is the real fake server process (tests/manager/fake_server.py) started by the vLLM
loader; the devices are the two-GPU fake probe of tests/manager/test_multi_gpu.py (8 GiB each,
NVML-style per-process figures for the server's pids on both cards).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakes import TwoGpuProbe
from tests.manager import test_multi_gpu
from tests.manager.test_multi_gpu import Harness, fake_task, tp_server
from vramdeck.manager import InsufficientMemoryError, ModelEvicted, ModelLoadError
from vramdeck.manager.config import GIB
from vramdeck.manager.preview import Preview

harness = test_multi_gpu.harness  # the same fixture: a Harness per call, shut down after


def planned(preview: Preview) -> list[tuple[str, str, int]]:
    return [(e.task, e.device, e.bytes) for e in preview.evictions]


def evicted(h: Harness) -> list[tuple[str, str, int]]:
    return [(e.task, e.device, e.freed_bytes) for e in h.of(ModelEvicted)]


async def test_a_load_preview_plans_room_on_every_device_the_server_spans(harness: Any) -> None:
    # 8 GiB cards, 6 GiB of each taken: the server's 3 GiB a card needs both gone.
    h = harness({
        "a": fake_task(6, "cuda:0"), "b": fake_task(6, "cuda:1"),
        "chat": tp_server("--tp", "2", vram_gb=6),
    }, TwoGpuProbe(server_gb={"cuda:0": 3, "cuda:1": 3}))  # fmt: skip
    m = h.manager
    await m.load_model("a")
    await m.load_model("b")
    preview = m.preview_load("chat")
    assert preview.fits, preview.summary
    assert planned(preview) == [("a", "cuda:0", 6 * GIB), ("b", "cuda:1", 6 * GIB)]
    await asyncio.wait_for(m.load_model("chat"), 15)
    assert evicted(h) == planned(preview)  # the same victims, device by device, in order


async def test_a_preview_says_a_server_does_not_fit_when_one_of_its_devices_cannot_make_room(
    harness: Any,
) -> None:
    h = harness({
        "a": fake_task(6, "cuda:0"), "b": fake_task(6, "cuda:1", pinned=True),
        "chat": tp_server("--tp", "2", vram_gb=6),
    })  # fmt: skip
    m = h.manager
    await m.load_model("a")
    await m.load_model("b")
    preview = m.preview_load("chat")
    assert not preview.fits and preview.evictions == ()
    assert "does not fit on cuda:1 (a server on cuda:0 and cuda:1)" in preview.summary
    with pytest.raises(InsufficientMemoryError, match="a server on 2 devices"):
        await asyncio.wait_for(m.load_model("chat"), 15)
    assert evicted(h) == []  # as previewed: a, which could have gone from cuda:0, stayed


async def test_a_preview_refuses_a_server_asking_for_more_gpus_than_there_are(
    harness: Any,
) -> None:
    h = harness({"chat": tp_server("--tp", "4")})
    preview = h.manager.preview_load("chat")
    assert not preview.fits
    assert "needs 4 GPUs (cuda:0, cuda:1, cuda:2, cuda:3) but cuda:2, cuda:3 are not" in (
        preview.summary
    )
    with pytest.raises(ModelLoadError, match=r"needs 4 GPUs .* cuda:2, cuda:3 are not present"):
        await asyncio.wait_for(h.manager.load_model("chat"), 15)


async def test_an_auto_server_is_previewed_where_all_its_ranks_fit(harness: Any) -> None:
    # cuda:0 is the fuller card, so `auto` alone picks cuda:1, from which two cards do not exist.
    h = harness({"small": fake_task(1, "cuda:0"), "chat": tp_server("--tp", "2", device="auto")})
    await h.manager.load_model("small")
    preview = h.manager.preview_load("chat")
    assert preview.summary == "loading chat fits on cuda:0 and cuda:1 without evicting anything"
    await asyncio.wait_for(h.manager.load_model("chat"), 15)
    assert h.manager.task_status("chat").devices == ("cuda:0", "cuda:1")


async def test_a_warm_up_preview_frees_an_evicted_server_on_both_its_devices(
    harness: Any,
) -> None:
    # In config order (the harness writes it sorted): the server takes 2 GiB of each card, b 5 of
    # cuda:0 (7 of 8); c's 7 GiB on cuda:1 evict the server, which frees cuda:0 too, so d's 3 GiB
    # fit beside b (8 of 8). Planned on one device, the server would have pushed b out instead.
    d = fake_task(3, "cuda:0")
    d["options"]["m"]["model_id"] = "fake-d"  # not b's: the ledger would charge it b's 5 GiB
    h = harness({
        "a": tp_server("--tp", "2"), "b": fake_task(5, "cuda:0"), "c": fake_task(7, "cuda:1"),
        "d": d,
    })  # fmt: skip
    m = h.manager
    preview = m.preview_warmup()
    assert planned(preview) == [("a", "cuda:0", 4 * GIB)]  # named by its first device
    assert preview.summary == "loading all 4 would evict a for c"
    await asyncio.wait_for(m.warmup_models(force=True), 30)
    assert evicted(h) == planned(preview)  # freed on both: 2 GiB of each card
    assert set(m.loaded_models) == {"b", "c", "d"}
