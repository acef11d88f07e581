"""The seed's contract: the original ``model_manager`` API used exactly as its document says.

Code written against the original constructs ``ModelManager(config_path)`` and nothing else, so
these tests do too: the real probe (system RAM here, the GPU where there is one), the real
loaders, a small real GPT-2 made locally, and external API options.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vramdeck.manager import ModelManager, TaskConfig

CONFIG = """\
models:
  chat:
    selected: tiny
    options:
      tiny: {{model_id: "{tiny}", framework: pytorch, vram_gb: 0.01, device: cpu}}
      cloud: {{model_id: claude-sonnet, framework: external_api, provider: anthropic,
               requires_api_key: true, api_key_env: SEED_TEST_KEY}}
  summarize:
    selected: api
    options:
      api: {{model_id: gpt-4o, framework: external_api, provider: openai}}
  translate:
    selected: api
    options:
      api: {{model_id: gemini, framework: external_api, provider: google}}
  huge:
    selected: big
    options:
      big: {{model_id: "{tiny}", framework: pytorch, vram_gb: 5000, device: cpu}}
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("seed") / "gpt2-tiny"
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300, n_positions=32)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture
def config_path(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("SEED_TEST_KEY", raising=False)
    path = tmp_path / "models.yaml"
    path.write_text(CONFIG.format(tiny=tiny_model), encoding="utf-8")
    return str(path)  # the seed takes a str


@pytest.fixture
def manager(config_path: str) -> Iterator[ModelManager]:
    m = ModelManager(config_path)
    yield m
    asyncio.run(m.shutdown())


def test_the_seed_attributes(manager: ModelManager, config_path: str) -> None:
    assert manager.config_path == Path(config_path)
    assert set(manager.config["models"]) == {"chat", "summarize", "translate", "huge"}
    assert isinstance(manager.tasks["chat"], TaskConfig)
    assert manager.tasks["chat"].get_selected_config().model_id.endswith("gpt2-tiny")
    assert manager.inference_config.offload_threshold > 0
    assert dict(manager.loaded_models) == {} and dict(manager.model_load_times) == {}
    assert dict(manager.model_memory_usage) == {}


def test_memory_queries_are_numbers(manager: ModelManager) -> None:
    total, available = manager.get_total_vram(), manager.get_available_vram()
    assert isinstance(total, int) and isinstance(available, int) and 0 < available <= total
    assert 0.0 <= manager.get_memory_usage_percentage() <= 1.0
    assert manager.check_memory_available(1) is True
    assert manager.check_memory_available(total * 2) is False


async def test_loading_keeps_the_seed_dicts_in_lru_order(manager: ModelManager) -> None:
    started = time.time()
    model = await manager.load_model("chat")
    assert type(model).__name__ == "GPT2LMHeadModel"
    await manager.load_model("summarize")
    await manager.load_model("translate")
    assert await manager.get_model("chat") is model  # now the most recently used
    assert list(manager.loaded_models) == ["summarize", "translate", "chat"]
    assert manager.loaded_models["chat"] is model
    assert manager.model_memory_usage["chat"] > 0 and manager.model_memory_usage["summarize"] == 0
    assert started <= manager.model_load_times["chat"] <= time.time()
    info = manager.get_loaded_models()
    assert set(info) == {"chat", "summarize", "translate"}
    assert info["chat"]["model_id"].endswith("gpt2-tiny") and info["chat"]["memory_usage_gb"] > 0
    # Evicting by LRU frees memory: the GPT-2, not the external APIs that hold none.
    assert manager.get_lru_model() == "chat"
    assert await manager.evict_lru_model() == "chat"
    assert "chat" not in manager.loaded_models and "chat" not in manager.model_memory_usage
    await manager.unload_model("summarize")
    assert list(manager.loaded_models) == ["translate"]
    await manager.shutdown()
    assert dict(manager.loaded_models) == {}


async def test_unknown_tasks_raise_the_seeds_value_error(manager: ModelManager) -> None:
    for call in (
        lambda: manager.load_model("nope"),
        lambda: manager.get_model("nope"),
        lambda: manager.set_selected_model("nope", "tiny"),
    ):
        with pytest.raises(ValueError, match=r"^Invalid task type: nope"):
            await call()
    for sync_call in (manager.is_external_api, manager.get_external_api_config):
        with pytest.raises(ValueError, match=r"^Invalid task type: nope"):
            sync_call("nope")
    assert manager.get_model_config("nope") is None
    assert manager.get_model_config("chat") is manager.tasks["chat"]


async def test_an_unknown_option_raises_the_seeds_value_error(manager: ModelManager) -> None:
    with pytest.raises(ValueError, match=r"^Invalid model name: gpt5 for task chat"):
        await manager.set_selected_model("chat", "gpt5")
    assert manager.tasks["chat"].selected == "tiny"


async def test_no_room_raises_the_seeds_runtime_error(manager: ModelManager) -> None:
    with pytest.raises(RuntimeError, match=r"^Insufficient memory for huge"):
        await manager.load_model("huge")
    assert "huge" not in manager.loaded_models


async def test_unloading_what_is_not_loaded_logs_and_returns(
    manager: ModelManager, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vramdeck.manager"):
        # The seed documents None; mypy rejects using it (func-returns-value), the test checks it.
        assert await manager.unload_model("chat") is None  # type: ignore[func-returns-value]
        assert await manager.unload_model("nope") is None  # type: ignore[func-returns-value]
    assert "'chat'" in caplog.text and "'nope'" in caplog.text


async def test_selecting_another_option_switches_a_loaded_task(
    manager: ModelManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEED_TEST_KEY", "sk-seed-test-0123456789")
    await manager.load_model("chat")
    await manager.set_selected_model("chat", "cloud")
    assert manager.tasks["chat"].selected == "cloud" and manager.is_external_api("chat")
    assert manager.loaded_models["chat"].model_id == "claude-sonnet"


def test_external_api_config_has_the_seeds_fields(
    manager: ModelManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-seed-test-0123456789"
    monkeypatch.setenv("SEED_TEST_KEY", key)
    asyncio.run(manager.set_selected_model("chat", "cloud"))
    config = manager.get_external_api_config("chat")
    assert (config.provider, config.model_id) == ("anthropic", "claude-sonnet")
    assert config.api_endpoint == "https://api.anthropic.com/v1"
    assert config.api_key == key and (config.timeout, config.max_retries) == (30, 3)
    assert key not in repr(config) and key not in str(config)
    endpoint = manager.get_external_api_config("summarize").api_endpoint
    assert endpoint is not None and endpoint.startswith("https://")


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_key_raises_the_seeds_value_error(
    manager: ModelManager, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("SEED_TEST_KEY", value)
    asyncio.run(manager.set_selected_model("chat", "cloud"))
    with pytest.raises(ValueError, match=r"^Missing API key: SEED_TEST_KEY environment variable"):
        manager.get_external_api_config("chat")


def test_a_local_task_has_no_external_api_config(manager: ModelManager) -> None:
    assert manager.is_external_api("chat") is False and manager.is_external_api("summarize")
    with pytest.raises(ValueError, match="does not use external API"):
        manager.get_external_api_config("chat")


def test_validate_memory_budget_has_the_seeds_keys(manager: ModelManager) -> None:
    report = manager.validate_memory_budget()
    assert {"valid", "total_vram_gb", "total_required_gb", "threshold", "max_allowed_gb"} <= set(
        report
    )
    assert report["valid"] is False  # huge asks for 5000 GiB
    assert report["model_requirements"]["huge"]["vram_gb"] == 5000
    assert report["model_requirements"]["summarize"]["vram_gb"] == 0


GIB = 1024**3


class SmallCard(ModelManager):
    """A subclass that reports a 10 GiB device, as seed users override for tests."""

    available = 10 * GIB

    def get_total_vram(self) -> int:
        return 10 * GIB

    def get_available_vram(self) -> int:
        return self.available


def test_overridden_memory_queries_are_honoured(config_path: str) -> None:
    m = SmallCard(config_path)
    report = m.validate_memory_budget()
    assert report["total_vram_gb"] == pytest.approx(10)
    threshold = m.inference_config.offload_threshold
    assert report["max_allowed_gb"] == pytest.approx(10 * threshold, rel=1e-6)
    assert m.check_memory_available(GIB) is True
    m.available = GIB // 2
    assert m.check_memory_available(GIB) is False
    asyncio.run(m.shutdown())


async def test_warmup_loads_only_when_asked(manager: ModelManager) -> None:
    assert manager.inference_config.warmup_on_startup is False
    await manager.warmup_models()
    assert dict(manager.loaded_models) == {}
