"""The real path: small real models loaded with transformers on the CPU, evicted, reloaded."""

from __future__ import annotations

import json

import pytest
import torch

from vramdeck.manager import Ledger, LoadFailed, ModelEvicted, ModelLoadError, ModelManager
from vramdeck.manager.config import GIB


def tensor_bytes(model: torch.nn.Module) -> int:
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in model.state_dict().values()
    }
    return sum(storages.values())


async def test_load_run_evict_reload_switch(real_config):
    m = ModelManager(real_config, ledger=Ledger(None))
    evicted: list[ModelEvicted] = []
    m.events.subscribe(evicted.append, ModelEvicted)
    try:
        gpt2 = await m.load_model("generate")
        assert type(gpt2).__name__ == "GPT2LMHeadModel"  # the class from the saved architectures
        with torch.no_grad():
            logits = gpt2(torch.tensor([[1, 2, 3]])).logits
        assert logits.shape == (1, 3, 5000)
        info = m.get_loaded_models()["generate"]
        assert info["device"] == "cpu"
        assert info["measured_bytes"] == tensor_bytes(gpt2)  # host RAM: the tensors' own bytes

        bert = await m.load_model("embed")
        with torch.no_grad():
            out = bert(input_ids=torch.tensor([[101, 7592, 2088, 102]]))
        assert out.last_hidden_state.shape == (1, 4, 384)
        assert [e.task for e in evicted] == ["generate"]
        # Evicted for real: the weights left memory even though this test still holds the module.
        assert all(p.device.type == "meta" for p in gpt2.parameters())

        again = await m.load_model("generate")  # reload evicts the MiniLM
        assert again is not gpt2 and next(again.parameters()).device.type == "cpu"
        assert [e.task for e in evicted] == ["generate", "embed"]

        await m.set_selected_model("generate", "small")
        small = m.loaded_models["generate"]
        assert small.config.n_embd == 64 and next(small.parameters()).dtype == torch.float32
        assert m.get_loaded_models()["generate"]["measured_bytes"] == tensor_bytes(small)
        assert all(p.device.type == "meta" for p in again.parameters())
    finally:
        await m.shutdown()
    assert m.loaded_models == {}


async def test_measured_sizes_persist_for_the_next_run(real_config, tmp_path):
    ledger_path = tmp_path / "ledger.json"
    m = ModelManager(real_config, ledger=Ledger(ledger_path))
    model = await m.load_model("generate")
    measured = tensor_bytes(model)
    await m.shutdown()
    entries = json.loads(ledger_path.read_text())["entries"]
    assert [v["bytes"] for v in entries.values()] == [measured]

    fresh = ModelManager(real_config, ledger=Ledger(ledger_path))
    report = fresh.validate_memory_budget()
    assert report["model_requirements"]["generate"]["measured"]
    assert report["model_requirements"]["generate"]["vram_gb"] == pytest.approx(measured / GIB)


async def test_missing_model_folder_fails_cleanly(write_config, tmp_path):
    path = write_config(
        f"models: {{t: {{options: {{a: {{model_id: '{tmp_path}/absent', vram_gb: 0.01}}}}}}}}\n"
    )
    m = ModelManager(path, ledger=Ledger(None))
    failed: list[LoadFailed] = []
    m.events.subscribe(failed.append, LoadFailed)
    with pytest.raises(ModelLoadError, match="absent"):
        await m.load_model("t")
    assert len(failed) == 1 and m.loaded_models == {} and m.devices.reserved("cpu") == 0
    await m.shutdown()


async def test_a_load_that_must_fail_evicts_nothing(write_config, tiny_models, tmp_path):
    """A missing folder is found before room is made: the model that would have been evicted
    for it stays."""
    path = write_config(
        "models:\n"
        f"  kept: {{options: {{a: {{model_id: '{tiny_models['wide']}', vram_gb: 0.02}}}}}}\n"
        f"  gone: {{options: {{a: {{model_id: '{tmp_path}/absent', vram_gb: 0.02}}}}}}\n"
        "inference: {memory_budget_gb: 0.03}\n"  # the two do not fit together
    )
    m = ModelManager(path, ledger=Ledger(None))
    evicted: list[ModelEvicted] = []
    m.events.subscribe(evicted.append, ModelEvicted)
    await m.load_model("kept")
    with pytest.raises(ModelLoadError, match=f"model folder {tmp_path}/absent does not exist"):
        await m.load_model("gone")
    assert evicted == [] and set(m.loaded_models) == {"kept"}
    assert str(m.failure_reason("gone")).endswith(f"model folder {tmp_path}/absent does not exist")
    await m.shutdown()


async def test_pickle_weights_only_when_the_config_allows(write_config, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "pickled"
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=32)
    config.architectures = ["GPT2LMHeadModel"]
    config.save_pretrained(folder)
    torch.save(GPT2LMHeadModel(config).state_dict(), folder / "pytorch_model.bin")
    text = "models:\n  t:\n    selected: safe\n    options:\n"
    text += f"      safe: {{model_id: '{folder}', vram_gb: 0.01}}\n"
    text += f"      opted: {{model_id: '{folder}', vram_gb: 0.01, allow_pickle: true}}\n"
    m = ModelManager(write_config(text), ledger=Ledger(None))
    with pytest.raises(ModelLoadError, match="pickle weights load only with allow_pickle: true"):
        await m.load_model("t")
    await m.set_selected_model("t", "opted")
    assert type(await m.load_model("t")).__name__ == "GPT2LMHeadModel"
    await m.shutdown()


def test_quantization_without_bitsandbytes_names_the_package(write_config):
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here, so 4bit options are available")
    m = ModelManager(
        write_config("models: {t: {options: {a: {model_id: x, quantization: 4bit}}}}\n")
    )
    reason = m.tasks["t"].options["a"].unavailable_reason
    assert reason is not None and "pip install bitsandbytes" in reason
