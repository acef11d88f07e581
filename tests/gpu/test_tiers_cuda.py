"""The host-RAM tier through the manager on a real CUDA device: an evicted GPT-2 is parked (its
device memory really goes, as NVML or torch shows), the next load restores it instead of reading
the checkpoint again, and it answers bit-identically. Skipped without CUDA."""

from __future__ import annotations

from pathlib import Path

import yaml

from vramdeck.manager import Ledger, ModelManager
from vramdeck.manager.events import Event, ModelParked, ModelRestored
from vramdeck.manager.loaders import TransformersLoader
from vramdeck.manager.residency import Residency
from vramdeck.manager.status import TaskState

GIB = 1024**3


def save_gpt2(path: Path, seed: int) -> str:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=4, n_embd=1024, n_head=8, vocab_size=16000, n_positions=128)
    GPT2LMHeadModel(config).save_pretrained(path)  # 0.249 GiB of float32 weights
    return str(path)


async def test_an_evicted_model_is_parked_and_restored_bit_identically(tmp_path: Path) -> None:
    import torch

    option = {"framework": "transformers", "vram_gb": 0.3, "device": "cuda:0"}
    models = {
        name: {"options": {"m": {**option, "model_id": save_gpt2(tmp_path / name, seed)}}}
        for seed, name in enumerate(("a", "b"))
    }
    # Room for one of them only, and a host tier that takes one.
    config = {"inference": {"memory_budget_gb": 0.45, "host_cache_gb": 1}, "models": models}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    m = ModelManager(path, loaders=[TransformersLoader()], ledger=Ledger(None))
    events: list[Event] = []
    m.events.subscribe(events.append)
    try:
        a = await m.load_model("a")
        ids = torch.randint(0, 16000, (1, 32), device="cuda:0")
        with torch.no_grad():
            before = a(ids).logits.cpu()
        held = torch.cuda.memory_allocated(0)
        await m.load_model("b")
        assert m.task_state("a") is TaskState.PARKED and m.residency("a") is Residency.HOST
        assert all(p.device.type == "cpu" and p.is_pinned() for p in a.parameters())
        (parked,) = [e for e in events if isinstance(e, ModelParked)]
        assert parked.bytes >= 0.24 * GIB
        assert torch.cuda.memory_allocated(0) < held + parked.bytes / 2  # a's went, b's came
        assert m.host_tier_status().enabled and m.host_tier_status().used_bytes == parked.bytes

        again = await m.load_model("a")
        assert again is a and m.task_state("a") is TaskState.LOADED
        assert next(a.parameters()).device.type == "cuda"
        with torch.no_grad():
            assert torch.equal(a(ids).logits.cpu(), before)
        (restored,) = [e for e in events if isinstance(e, ModelRestored)]
        loaded_s = m.task_status("b").load_duration_s
        print(f"restore {restored.duration_s * 1000:.1f} ms, cold load of b {loaded_s} s")
    finally:
        await m.shutdown()
