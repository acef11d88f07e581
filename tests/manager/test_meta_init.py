"""Weight initialisation is skipped for meta tensors only (manager/loaders/meta_init.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import init
from torch.overrides import TorchFunctionMode

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.loaders import meta_init
from vramdeck.manager.loaders.base import LoadContext
from vramdeck.manager.loaders.transformers_loader import TransformersLoader
from vramdeck.manager.memory import HostProbe


class CountingMode(TorchFunctionMode):
    """Counts the torch functions dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


def test_a_meta_tensor_is_returned_untouched_without_running_torch() -> None:
    meta_init.install()
    weight = torch.empty(64, 64, device="meta")
    with CountingMode() as original:
        init.normal_.__wrapped__(weight, std=0.02)  # type: ignore[attr-defined]
    assert "normal_" in original.names  # what the wrapper saves: the kernel on a meta tensor
    with CountingMode() as mode:
        assert init.normal_(weight, std=0.02) is weight
        assert init.kaiming_uniform_(weight) is weight
    assert mode.names == ["__get__", "__get__"]  # reading `is_meta`, and nothing else


def test_a_real_tensor_gets_the_original_values_and_random_stream() -> None:
    meta_init.install()
    original = init.normal_.__wrapped__  # type: ignore[attr-defined]
    torch.manual_seed(7)
    expected = original(torch.empty(32), std=0.5)
    after_expected = torch.rand(4)
    torch.manual_seed(7)
    got = init.normal_(torch.empty(32), std=0.5)
    assert torch.equal(got, expected)
    assert torch.equal(torch.rand(4), after_expected)


def test_install_is_idempotent() -> None:
    meta_init.install()
    first = init.uniform_
    meta_init.install()
    assert init.uniform_ is first
    assert first.__wrapped__.__name__ == "uniform_"  # type: ignore[attr-defined]
    assert not getattr(first.__wrapped__, "vramdeck_skips_meta", False)  # type: ignore[attr-defined]


def test_a_real_load_gives_the_saved_model_outputs(tmp_path: Path) -> None:
    """Through the loader (which installs the wrapper): every weight comes from the checkpoint."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16)
    saved = GPT2LMHeadModel(config).eval()
    saved.save_pretrained(tmp_path / "gpt2")
    option = ModelConfig(
        {"model_id": str(tmp_path / "gpt2"), "framework": "transformers"}, name="tiny"
    )
    ctx = LoadContext(task="t", device="cpu", probe=HostProbe())
    loaded = TransformersLoader().load(option, ctx)
    assert getattr(init.normal_, "vramdeck_skips_meta", False)
    ids = torch.arange(10)[None]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, saved(ids).logits)


@pytest.mark.parametrize("name", ["normal_", "zeros_", "xavier_uniform_", "trunc_normal_"])
def test_each_initialiser_keeps_its_signature(name: str) -> None:
    meta_init.install()
    wrapped = getattr(init, name)
    assert wrapped.__name__ == name
    tensor = torch.empty(4, 4)
    assert wrapped(tensor) is tensor
