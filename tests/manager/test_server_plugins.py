"""Loader plug-ins: found through the vramdeck.loaders entry points; the docs' examples run."""

from __future__ import annotations

import re
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import psutil
import pytest

import vramdeck.manager.loaders as loaders
from tests.manager.fake_server import fake_command, gone
from vramdeck.manager.config import GIB, ModelConfig
from vramdeck.manager.loaders import (
    ENTRY_POINT_GROUP,
    LoadContext,
    Loader,
    LoaderRegistry,
    ServerLoader,
)
from vramdeck.manager.memory import HOST, HostProbe

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", ROOT / "docs" / "loaders.md")


def doc_example(first_line: str) -> str:
    """The ```python block of the README or docs/loaders.md that starts with `first_line`."""
    for doc in DOCS:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.DOTALL):
            if block.startswith(first_line):
                return str(block)
    raise AssertionError(f"no python block in the docs starts with {first_line!r}")


@pytest.fixture
def llamacpp_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The docs' llama.cpp plug-in, installed as a module and offered by an entry point."""
    (tmp_path / "vramdeck_llamacpp.py").write_text(doc_example('"""vramdeck_llamacpp'))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vramdeck_llamacpp", raising=False)
    eps = [
        EntryPoint("llamacpp", "vramdeck_llamacpp:LlamaCppLoader", ENTRY_POINT_GROUP),
        EntryPoint("broken", "no_such_module:Loader", ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(loaders, "entry_points", lambda group: eps if group == eps[0].group else [])
    return eps


def llamacpp_option(**fields: Any) -> ModelConfig:
    return ModelConfig(
        {"model_id": "/m/llama-8b.gguf", "framework": "llamacpp", **fields}, name="q4"
    )


def test_plugins_are_found_through_entry_points(
    llamacpp_plugin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    registry = LoaderRegistry.default()
    plugin = registry.get("llamacpp")
    assert type(plugin).__name__ == "LlamaCppLoader"
    assert isinstance(plugin, Loader)
    assert "vllm" in registry.frameworks and "transformers" in registry.frameworks
    assert "loader plug-in broken (no_such_module:Loader) failed to load" in caplog.text


def test_a_plugin_builds_its_command_and_names_what_is_missing(
    llamacpp_plugin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = LoaderRegistry.default().get("llamacpp")
    monkeypatch.setenv("PATH", "")
    assert plugin.unavailable_reason(llamacpp_option()) == (
        "llama.cpp is not installed here: install llama.cpp and put llama-server on PATH "
        "(or give server_command)"
    )
    assert isinstance(plugin, ServerLoader)  # the docs' plug-in is a ServerLoader
    argv = plugin.command(llamacpp_option(), "cuda:0", 8080, 24 * GIB)
    assert argv == ["llama-server", "-m", "/m/llama-8b.gguf", "--host", "127.0.0.1", "--port",
                    "8080", "--n-gpu-layers", "999"]  # fmt: skip


async def test_the_docs_plugin_runs_a_server(llamacpp_plugin: Any) -> None:
    plugin = LoaderRegistry.default().get("llamacpp")
    option = llamacpp_option(server_command=fake_command("--hold-mb", "10"), vram_gb=0.05)
    total = psutil.virtual_memory().total
    ctx = LoadContext(task="chat", device=HOST, probe=HostProbe(), device_total_bytes=total)
    handle = await plugin.load(option, ctx)
    assert await handle.health()
    await plugin.unload(handle, HOST)  # type: ignore[misc]
    assert gone(handle.pid)


def test_a_framework_without_a_loader_stays_listed_as_unavailable(tmp_path: Path) -> None:
    from vramdeck.manager import ModelManager

    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n  chat:\n    options:\n      q4:\n        model_id: m.gguf\n"
        "        framework: llamacpp\n"
    )
    manager = ModelManager(config, loaders=loaders.builtin_loaders())
    option = manager.tasks["chat"].options["q4"]
    assert option.unavailable_reason is not None
    assert "no loader for framework 'llamacpp'" in option.unavailable_reason
    assert ENTRY_POINT_GROUP in option.unavailable_reason
    assert manager.task_state("chat") == "unavailable"


def test_the_docs_in_process_example_meets_the_protocol() -> None:
    namespace: dict[str, Any] = {}
    exec(doc_example("import importlib.util"), namespace)
    onnx = namespace["OnnxLoader"]()
    assert isinstance(onnx, Loader)
    assert LoaderRegistry([onnx]).get("onnx") is onnx
