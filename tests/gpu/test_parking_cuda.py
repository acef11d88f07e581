"""Parking on a real CUDA device: the device memory goes when parked and comes back restored,
the host copy is pinned, and the restored model answers bit-identically. Skipped without CUDA."""

from __future__ import annotations

import pytest

from vramdeck.manager import parking


def test_park_frees_the_device_and_restore_is_bit_identical():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_embd=512, n_head=8, vocab_size=8000, n_positions=128)
    # transformers wraps `to` in functools.wraps, whose stub (`_Wrapped`, no `__get__`) drops the
    # bound self: mypy takes "cuda:0" for it. The call is right; the ignore is for that stub.
    model = GPT2LMHeadModel(config).to("cuda:0").eval()  # type: ignore[arg-type]
    ids = torch.randint(0, 8000, (1, 16), device="cuda:0")
    with torch.no_grad():
        before = model(ids).logits.cpu()
    on_device = torch.cuda.memory_allocated(0)

    copied = parking.park(model, pin=True)
    torch.cuda.empty_cache()

    assert parking.model_device(model) == "cpu"
    assert all(p.is_pinned() for p in model.parameters())
    assert torch.cuda.memory_allocated(0) <= on_device - copied + 1024**2
    assert model.lm_head.weight is model.transformer.wte.weight

    parking.restore(model, "cuda:0")
    assert parking.model_device(model) == "cuda:0"
    with torch.no_grad():
        after = model(ids).logits.cpu()
    assert torch.equal(before, after)
    assert torch.cuda.memory_allocated(0) >= copied


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_survives_the_round_trip(dtype):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=256, n_head=4, vocab_size=4000, n_positions=64)
    model = GPT2LMHeadModel(config)
    model = model.to("cuda:0", getattr(torch, dtype)).eval()  # type: ignore[arg-type]  # as above
    parking.park(model, pin=True)
    parking.restore(model, "cuda:0")
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
