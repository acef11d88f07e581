"""Cancel on a CUDA device: a real GPT-2 stopped while it copies its shards to the GPU leaves no
tensor allocated and the device's memory back where it was. Skipped without CUDA (conftest)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from vramdeck.manager import Ledger, LoadCancelledError, ModelManager, TaskState
from vramdeck.manager.config import ModelConfig
from vramdeck.manager.loaders import ExternalAPILoader, LoadContext, TransformersLoader

MIB = 2**20


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2 of ≈320 MiB in shards of 40 MB."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("gpu-cancel") / "gpt2"
    config = GPT2Config(n_layer=6, n_embd=1024, n_head=8, vocab_size=8000, n_positions=256)
    GPT2LMHeadModel(config).save_pretrained(path, max_shard_size="40MB")
    return path


class Pausing(TransformersLoader):
    """The real loader, paused at its tenth report of bytes read until `proceed` is set.

    (Not `resume`: that name is the loader's own method, which a comeback calls.)
    """

    def __init__(self) -> None:
        self.paused, self.proceed = threading.Event(), threading.Event()
        self.reads = 0

    def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        def progress(fraction: float | None, stage: str) -> None:
            if fraction and fraction < 1:
                self.reads += 1
                if self.reads == 10:
                    self.paused.set()
                    assert self.proceed.wait(30)
            ctx.progress(fraction, stage)

        return super().load(option, dataclasses.replace(ctx, progress=progress))


async def test_a_load_cancelled_half_way_to_the_gpu_frees_what_it_copied(tmp_path, sharded):
    import torch

    path = tmp_path / "models.yaml"
    path.write_text(
        f"""
models:
  generate:
    options:
      gpt2: {{model_id: "{sharded}", vram_gb: 0.35, device: "cuda:0"}}
"""
    )
    loader = Pausing()
    m = ModelManager(path, loaders=[loader, ExternalAPILoader()], ledger=Ledger(None))
    try:
        torch.zeros(1, device="cuda:0")  # the CUDA context first: it is nobody's model
        allocated = torch.cuda.memory_allocated("cuda:0")
        used_before = (await m.devices.read_async("cuda:0")).used
        load = asyncio.ensure_future(m.load_model("generate"))
        await asyncio.to_thread(loader.paused.wait, 60)
        assert torch.cuda.memory_allocated("cuda:0") > allocated  # some weights are on the GPU
        cancelling = asyncio.ensure_future(m.cancel_load("generate"))
        await asyncio.sleep(0)  # one step: the flag is set while the worker is paused
        loader.proceed.set()
        assert await cancelling is True
        with pytest.raises(LoadCancelledError):
            await load
        assert m.task_state("generate") is TaskState.UNLOADED
        assert torch.cuda.memory_allocated("cuda:0") == allocated  # no tensor of it is left
        used_after = (await m.devices.read_async("cuda:0")).used
        assert used_after - used_before < 8 * MIB  # the cache went back to the driver too
    finally:
        await m.shutdown()
