"""The panel serves its tasks: the endpoint starts with it (on a free port under tests), real
HTTP on loopback reaches the models, the table counts the requests, the toggle stops and starts
it, a port in use shows in the banner, and Try-it sends through the endpoint's own path."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from PySide6.QtGui import QGuiApplication

from tests.gui.helpers import Panel, until, write_config
from tests.serving.models import train_tokenizer
from vramdeck.gui.event_log import NO_REQUESTS, REQUESTS_ONLY
from vramdeck.gui.serving_panel import RANDOM_NOTE, REAL_NOTE, demo_note
from vramdeck.gui.task_table import requests_text


@pytest.fixture(scope="module")
def chat_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random GPT-2 with a tokenizer trained here (the endpoint needs one), with room for
    Try-it's 128 new tokens after a prompt."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("gui-serving") / "gpt2"
    tokenizer = train_tokenizer()
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=len(tokenizer),
                        n_positions=256, bos_token_id=0, eos_token_id=0)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def serving_config(tmp_path: Path, chat_gpt2: Path) -> Path:
    return write_config(tmp_path, f"""\
models:
  chat:
    selected: small
    options:
      small: {{model_id: "{chat_gpt2}", vram_gb: 0.001}}
  other:
    selected: small
    options:
      small: {{model_id: "{chat_gpt2}", vram_gb: 0.001}}
inference:
  serving: {{default_max_tokens: 8}}  # Try-it's answers: short, so a test waits seconds at most
""")  # fmt: skip


def row(panel: Panel, task: str):  # -> TaskRow
    return panel.window.table_model.rows()[panel.window.table_model.row_of(task)]


async def _chat(url: str, task: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as client:
        body = {"model": task, "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 3}  # fmt: skip
        async with client.post(f"{url}/chat/completions", json=body) as reply:
            return reply.status, await reply.json()


async def _health(url: str) -> int:
    async with (
        aiohttp.ClientSession() as client,
        client.get(url.removesuffix("/v1") + "/health") as reply,
    ):
        return reply.status


def test_the_panel_serves_its_tasks_and_counts_the_requests(
    make_panel: Callable[..., Panel], serving_config: Path
) -> None:
    panel = make_panel(serving_config)
    url = panel.bridge.serving.url
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":8765/v1")
    button = panel.window.serving.url_button
    assert button.text() == f"serving {url}" and button.isEnabled()
    button.click()
    assert QGuiApplication.clipboard().text() == url
    assert row(panel, "chat").requests.served == 0 and requests_text(row(panel, "chat")) == "—"

    status, reply = panel.run(_chat(url, "chat"))
    assert status == 200, reply
    assert reply["model"] == "chat" and reply["usage"]["completion_tokens"] >= 1

    async def counted() -> None:
        await until(lambda: row(panel, "chat").requests.served == 1, "the request is counted")

    panel.run(counted())
    panel.window.flush()
    counts = row(panel, "chat").requests
    assert counts.in_flight == 0 and counts.queued == 0
    assert counts.last_latency_s is not None and counts.last_latency_s > 0
    assert requests_text(row(panel, "chat")).startswith("0/0/1 · ")
    assert row(panel, "other").requests.served == 0  # counted per task
    kinds = [(e.kind, e.task) for e in panel.window.log.model.entries()]
    assert ("RequestStarted", "chat") in kinds and ("RequestFinished", "chat") in kinds


def test_the_toggle_stops_and_starts_the_endpoint(
    make_panel: Callable[..., Panel], serving_config: Path
) -> None:
    panel = make_panel(serving_config)
    toggle = panel.window.serving.toggle
    first = panel.bridge.serving.url
    assert toggle.isChecked() and panel.run(_health(first)) == 200

    toggle.setChecked(False)
    panel.run(until(lambda: not panel.bridge.serving.running, "the endpoint stopped"))
    assert panel.window.serving.url_button.text() == "not serving"
    with pytest.raises(aiohttp.ClientConnectionError):
        panel.run(_health(first))

    toggle.setChecked(True)
    panel.run(until(lambda: panel.bridge.serving.running, "the endpoint listens again"))
    assert panel.run(_health(panel.bridge.serving.url)) == 200


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_a_port_in_use_shows_in_the_banner_not_a_crash(
    make_panel: Callable[..., Panel],
    serving_config: Path,
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VRAMDECK_PANEL_PORT", str(taken_port))
    panel = make_panel(serving_config)
    window = panel.window
    assert window.banner.isVisible()
    assert "The OpenAI endpoint is not running" in window.banner.title.text()
    assert f"port {taken_port} is in use" in window.banner.message.text()
    assert not window.serving.toggle.isChecked() and not panel.bridge.serving.running
    assert window.serving.url_button.text() == "not serving"
    assert row(panel, "chat").state == "unloaded"  # the panel itself goes on


def test_try_it_sends_through_the_endpoints_path(
    make_panel: Callable[..., Panel], serving_config: Path
) -> None:
    panel = make_panel(serving_config)
    dock = panel.window.serving.dock
    assert not dock.isVisible()
    panel.window.serving.show_dock.trigger()
    assert dock.isVisible()
    dock.task.setCurrentText("chat")
    dock.prompt.setPlainText("Hello")
    dock.send.click()
    panel.run(until(lambda: dock.send.text() == "Send", "Try-it finished", 90), timeout=120)
    assert "first token after" in dock.stats.text(), dock.stats.text()
    assert dock.output.toPlainText() != ""
    assert dock.send.text() == "Send"
    panel.run(until(lambda: row(panel, "chat").requests.served == 1, "counted like a request"))
    panel.window.flush()
    kinds = [(e.kind, e.task) for e in panel.window.log.model.entries()]
    assert ("RequestFinished", "chat") in kinds


def test_the_dock_says_which_demo_models_are_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRAMDECK_DEMO_MODELS", "/data/demo")
    monkeypatch.setenv("VRAMDECK_MINILM", "/pkg/minilm")
    assert demo_note("${VRAMDECK_DEMO_MODELS}/gpt2-small") == RANDOM_NOTE
    assert demo_note("/data/demo/gpt2-medium") == RANDOM_NOTE
    assert demo_note("/pkg/minilm") == REAL_NOTE
    assert demo_note("meta-llama/Llama-3.1-8B-Instruct") == ""
    assert "noise" in RANDOM_NOTE and "real" in REAL_NOTE


def test_the_log_filters_request_events(
    make_panel: Callable[..., Panel], serving_config: Path
) -> None:
    panel = make_panel(serving_config)
    status, _ = panel.run(_chat(panel.bridge.serving.url, "chat"))
    assert status == 200
    panel.run(until(lambda: row(panel, "chat").requests.served == 1, "the request is counted"))
    log = panel.window.log
    log.kind_combo.setCurrentIndex(log.kind_combo.findData(REQUESTS_ONLY))
    kinds = {e.kind for e in log.visible_entries()}
    assert kinds == {"RequestStarted", "RequestFinished"}
    log.kind_combo.setCurrentIndex(log.kind_combo.findData(NO_REQUESTS))
    kinds = {e.kind for e in log.visible_entries()}
    assert "ModelLoaded" in kinds and not kinds & {"RequestStarted", "RequestFinished"}
    finished = next(e for e in panel.window.log.model.entries() if e.kind == "RequestFinished")
    assert finished.task == "chat" and finished.reason.startswith("HTTP 200 in ")
