"""Parking moves a real model's weights to host memory and back without reloading it.

On a machine without a GPU, "host" and "device" are both the CPU, so these tests check what
parking must keep (ties, dtypes, the same module, bit-identical outputs) with real copies to
fresh host tensors; tests/gpu/ checks the device memory really goes and comes back.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vramdeck.manager import parking  # noqa: E402


def tiny_gpt2(dtype=None):
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=97,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    return model.to(dtype) if dtype else model


def unique_bytes(model) -> int:
    seen = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_parked_and_restored_outputs_are_bit_identical(dtype):
    model = tiny_gpt2(dtype)
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        before = model(ids).logits.clone()
    first_weight = model.transformer.h[0].attn.c_attn.weight.data_ptr()

    copied = parking.park(model, pin=False)

    assert model.transformer.h[0].attn.c_attn.weight.data_ptr() != first_weight  # really copied
    assert copied == unique_bytes(model)
    assert {p.dtype for p in model.parameters()} == {dtype}
    parking.restore(model, "cpu")
    with torch.no_grad():
        after = model(ids).logits
    assert torch.equal(before, after)


def test_tied_weights_stay_tied_and_are_copied_once():
    model = tiny_gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    copied = parking.park(model, pin=False)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    untied = sum(
        p.numel() * p.element_size() for _, p in model.named_parameters(remove_duplicate=False)
    )
    assert copied < untied  # the shared embedding was not copied twice


def test_quantized_or_spread_models_are_not_parked():
    model = tiny_gpt2()
    assert parking.unparkable_reason(model) is None
    model.is_quantized = True
    assert "quantized" in (parking.unparkable_reason(model) or "")
    other = tiny_gpt2()
    other.hf_device_map = {"transformer": 0, "lm_head": 1}
    assert "several devices" in (parking.unparkable_reason(other) or "")
    assert parking.unparkable_reason(object()) == "not a torch module"


def test_model_device_reads_the_first_tensor():
    assert parking.model_device(tiny_gpt2()) == "cpu"


def test_the_transformers_loader_parks_and_restores_in_the_device_worker(tmp_path):
    # The loader's suspend/resume, as the manager calls them (InWorker, the device's worker
    # thread): the same module comes back and answers bit-identically.
    import asyncio

    from vramdeck.manager.devices import DevicePool
    from vramdeck.manager.loaders import LoadContext, TransformersLoader
    from vramdeck.manager.loaders.base import InWorker, Parked
    from vramdeck.manager.memory import HostProbe
    from vramdeck.manager.residency import Residency

    async def run() -> None:
        pool = DevicePool(HostProbe())
        loader = InWorker(TransformersLoader(), pool)
        assert loader.suspends_to is Residency.HOST
        model = tiny_gpt2()
        ids = torch.tensor([[1, 5, 9, 2]])
        with torch.no_grad():
            before = model(ids).logits
        assert loader.can_suspend(model)
        ctx = LoadContext(task="lm", device="cpu", probe=pool.probe)
        parked = await loader.suspend(model, ctx)
        assert isinstance(parked, Parked)  # an in-process model parks in host RAM
        assert parked.kept and parked.host_bytes == unique_bytes(model)
        restored = await loader.resume(model, ctx)
        assert restored.taken_bytes == parked.host_bytes
        assert model.lm_head.weight is model.transformer.wte.weight
        with torch.no_grad():
            assert torch.equal(model(ids).logits, before)
        await pool.close()

    asyncio.run(run())


def test_quantized_models_are_not_parked():
    from vramdeck.manager.loaders import TransformersLoader

    model = tiny_gpt2()
    model.is_quantized = True
    assert not TransformersLoader().can_suspend(model)


def test_whether_a_model_would_park_is_known_before_it_loads():
    """A preview asks `would_suspend` of the loads it plays: a plain model parks, one that
    bitsandbytes quantizes is dropped."""
    from vramdeck.manager.config import ModelConfig
    from vramdeck.manager.loaders import LoadContext, TransformersLoader
    from vramdeck.manager.memory import HostProbe

    loader = TransformersLoader()
    ctx = LoadContext(task="lm", device="cuda:0", probe=HostProbe())
    plain = ModelConfig({"model_id": "m", "framework": "transformers"}, name="m")
    in_4bit = ModelConfig({"model_id": "m", "framework": "transformers", "quantization": "4bit"},
                          name="q")  # fmt: skip
    assert loader.would_suspend(plain, ctx) and loader.can_suspend(tiny_gpt2())
    assert not loader.would_suspend(in_4bit, ctx)
