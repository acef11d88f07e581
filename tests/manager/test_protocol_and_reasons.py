"""The one loader protocol (async, with defaults; blocking loaders adapted into the device worker),
the typed states and reasons, and what Evict LRU and a full device say in words."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.fakes import FakeModel, FakeProbe
from vramdeck.manager import (
    AsyncLoader,
    InsufficientMemoryError,
    LoadContext,
    ModelEvicted,
    RemovalReason,
    TaskState,
)
from vramdeck.manager.config import GIB, ModelConfig
from vramdeck.manager.loaders import ExternalAPILoader, LoaderRegistry

MIXED = """
models:
  api: {options: {claude: {model_id: claude, framework: external_api, provider: anthropic}}}
  a: {options: {m: {model_id: model-a, vram_gb: 3}}}
  b: {options: {m: {model_id: model-b, vram_gb: 3}}}
inference: {offload_threshold: 0.7}
"""


async def test_evict_by_hand_frees_memory_before_an_external_api(make_manager):
    m, probe, _ = make_manager(MIXED)
    evicted: list[ModelEvicted] = []
    m.events.subscribe(evicted.append, ModelEvicted)
    await m.load_model("api")  # least recently used, but it holds nothing
    await m.load_model("a")
    assert m.task_state("api") is TaskState.EXTERNAL and m.task_state("a") is TaskState.LOADED
    assert m.get_lru_model() == "a"
    assert await m.evict_lru_model() == "a"
    assert probe.used["cuda:0"] == 0
    (event,) = evicted
    assert event.cause is RemovalReason.EVICT
    assert event.reason.startswith("you asked to evict the least recently used model: idle ")
    assert await m.evict_lru_model() == "api"  # only then the external API


async def test_a_full_device_of_pinned_models_says_so(make_manager):
    m, _, _ = make_manager(MIXED.replace("vram_gb: 3}}}\ninference", "vram_gb: 0.5}}}\ninference"))
    await m.load_model("a")
    m.set_pinned("a", True)
    m.tasks["b"].options["m"].vram_gb = 6.8  # with a's 3 GiB, over the 7 GiB limit
    with pytest.raises(InsufficientMemoryError) as raised:
        await m.load_model("b")
    message = str(raised.value)
    assert message.startswith("Insufficient memory for b: needs 6.80 GiB on cuda:0")
    assert "nothing can be evicted: every other model there is pinned or in use: a (pinned)" in (
        message
    )
    assert "0.00 GiB" not in message


async def test_small_figures_in_messages_are_mib(make_manager):
    m, _, _ = make_manager(
        MIXED.replace("inference: {offload_threshold: 0.7}", "inference: {memory_budget_gb: 0.01}")
    )
    m.tasks["a"].options["m"].vram_gb = 0.02
    with pytest.raises(InsufficientMemoryError, match=r"needs 20\.5 MiB") as raised:
        await m.load_model("a")
    assert "memory_budget_gb 10.2 MiB" in str(raised.value)


class PluginAPILoader(AsyncLoader):
    """A plug-in API: a framework other than external_api whose models take no local memory."""

    frameworks: ClassVar[tuple[str, ...]] = ("myapi",)
    holds_device_memory: ClassVar[bool] = False

    async def load(self, option: ModelConfig, ctx: LoadContext) -> str:
        return f"client for {option.model_id}"


async def test_a_plugin_api_is_budgeted_alike_at_load_and_in_validation(make_manager):
    m, probe, fake = make_manager(
        """
        models:
          chat: {options: {remote: {model_id: remote-llm, framework: myapi, vram_gb: 50}}}
          local: {options: {m: {model_id: model-a, vram_gb: 3}}}
        """
    )
    m.registry = LoaderRegistry([fake, ExternalAPILoader(), PluginAPILoader()])
    report = m.validate_memory_budget()
    assert report["valid"] and report["model_requirements"]["chat"]["vram_gb"] == 0
    assert report["model_requirements"]["chat"]["external"] is True
    assert report["devices"]["cuda:0"]["tasks"] == {"local": 3.0}
    assert await m.load_model("chat") == "client for remote-llm"
    assert m.get_loaded_models()["chat"]["device"] == "none" and probe.used["cuda:0"] == 0
    status = m.task_status("chat")
    assert status.state is TaskState.EXTERNAL and not status.holds_memory


class BlockingLoader:
    """A plain blocking plug-in with only the required members (no optional ones)."""

    frameworks: ClassVar[tuple[str, ...]] = ("blocking",)

    def __init__(self, probe: Any) -> None:
        self.probe = probe
        self.contexts: list[LoadContext] = []
        self.threads: list[str] = []

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        return None

    def load(self, option: ModelConfig, ctx: LoadContext) -> FakeModel:
        self.contexts.append(ctx)
        self.threads.append(threading.current_thread().name)
        self.probe.add(ctx.device, GIB)
        return FakeModel(option.model_id, ctx.device, GIB, self.threads[-1])

    def footprint(self, model: FakeModel, device: str) -> int | None:
        return None  # the device's delta is the figure

    def unload(self, model: FakeModel, device: str) -> None:
        self.threads.append(threading.current_thread().name)
        self.probe.add(device, -model.nbytes)

    def check(self, model: FakeModel) -> None:
        return None


async def test_a_blocking_plugin_runs_in_the_device_worker_with_the_managers_probe(make_manager):
    m, probe, _ = make_manager(
        "models:\n  t: {options: {o: {model_id: b, framework: blocking, vram_gb: 0.5}}}\n"
    )
    assert isinstance(probe, FakeProbe)  # kept through `ctx.probe is probe` below
    loader = BlockingLoader(probe)
    m.registry = LoaderRegistry([loader])
    await m.load_model("t")
    assert m.model_memory_usage["t"] == GIB  # measured on the device, not the 0.5 estimate
    (ctx,) = loader.contexts
    assert ctx.probe is probe and ctx.device == "cuda:0" and ctx.task == "t"
    await m.unload_model("t")
    assert loader.threads == ["vramdeck-cuda0_0", "vramdeck-cuda0_0"]
    assert probe.used["cuda:0"] == 0


def docs_example(first_line: str) -> str:
    """The ```python block of docs/loaders.md that contains `first_line`."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "loaders.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    return next(b for b in blocks if first_line in b)


async def test_the_docs_api_plugin_loads_through_the_manager(make_manager):
    namespace: dict[str, Any] = {}
    exec(docs_example("class MistralAPILoader(AsyncLoader):"), namespace)
    m, probe, fake = make_manager(
        "models:\n  chat: {options: {m: {model_id: mistral-large, framework: mistral_api,"
        " api_endpoint: 'https://api.mistral.ai/v1'}}}\n"
    )
    m.registry = LoaderRegistry([fake, namespace["MistralAPILoader"]()])
    client = await m.load_model("chat")
    assert client == {"model": "mistral-large", "endpoint": "https://api.mistral.ai/v1"}
    assert m.task_state("chat") is TaskState.EXTERNAL and probe.reads == 0  # nothing measured


async def test_the_seed_dicts_are_read_views_of_one_entry_per_task(make_manager):
    m, _, _ = make_manager(MIXED)
    await m.load_model("a")
    await m.load_model("api")
    await m.get_model("a")  # a becomes the most recently used
    assert list(m.loaded_models) == ["api", "a"] and list(reversed(m.loaded_models)) == ["a", "api"]
    assert dict(m.model_memory_usage) == {"api": 0, "a": 3 * GIB}
    assert m.model_load_times.keys() == m.loaded_models.keys()
    assert m.loaded_models == {"api": m.loaded_models["api"], "a": m.loaded_models["a"]}
    with pytest.raises(TypeError):
        m.loaded_models["a"] = None
    await m.unload_model("a")  # one removal: every view follows
    assert "a" not in m.loaded_models and "a" not in m.model_memory_usage
    assert "a" not in m.model_load_times and "a" not in m.get_loaded_models()
