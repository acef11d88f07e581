"""Try-it: a request through the endpoint's own path with no HTTP, and the panel's dock for it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from tests.serving.conftest import Finished
from tests.waiting import until
from vramdeck.serving.try_it import TryItDone, TryItError, try_it


@pytest.fixture
def config(write_config, chat_models, minilm_path):
    return write_config(
        f"""
        models:
          chat:
            options:
              templated: {{model_id: "{chat_models["templated"]}", vram_gb: 0.001}}
          embed:
            options:
              minilm: {{model_id: "{minilm_path}", auto_class: AutoModel, vram_gb: 0.09}}
          big_llm:
            options:
              llama: {{model_id: meta-llama/Llama-3.1-8B-Instruct, framework: vllm, vram_gb: 18}}
        """
    )


async def test_try_it_streams_counts_and_reports_like_a_request(serve, config):
    endpoint = await serve(config)
    finished = Finished(endpoint.manager)
    items = [item async for item in try_it(endpoint.serving, "chat", "Hello", max_tokens=8)]
    *pieces, done = items
    assert isinstance(done, TryItDone) and 1 <= done.tokens <= 8
    assert all(isinstance(p, str) for p in pieces)
    if pieces:
        assert done.time_to_first_token_s is not None and done.tokens_per_second
    await finished.wait(1)
    assert finished.events[0].task == "chat" and finished.events[0].status == 200
    assert endpoint.serving.admission.counts_of("chat").served == 1

    report, _ = [item async for item in try_it(endpoint.serving, "embed", "A cat.\nA kitten.")]
    assert isinstance(report, str)
    assert report.startswith("2 vectors of 384 dimensions") and "cosine(line 1, line 2)" in report

    with pytest.raises(TryItError, match="cannot load here"):
        async for _ in try_it(endpoint.serving, "big_llm", "x"):
            pass
    with pytest.raises(TryItError, match="tasks are: chat, embed, big_llm"):
        async for _ in try_it(endpoint.serving, "nope", "x"):
            pass


async def test_the_dock_shows_pieces_and_stats_and_stops(qtbot):
    from vramdeck.gui.try_it_dock import TryItDock, drive

    dock = TryItDock()
    qtbot.addWidget(dock)
    gate = asyncio.Event()
    ended = asyncio.Event()

    async def run(task: str, text: str):
        try:
            yield f"{task}:"
            yield text
            if text == "wait":
                await gate.wait()
            yield SimpleNamespace(time_to_first_token_s=0.012, tokens=2, tokens_per_second=40.0)
        finally:
            ended.set()

    drive(dock, run)
    dock.set_tasks(["chat", "embed"], {"chat": "random weights: the output is noise"})
    assert dock.note.text() == "random weights: the output is noise"
    dock.prompt.setPlainText("hi")
    dock.send.click()
    await ended.wait()
    # the request's last step runs after the generator closed
    await until(lambda: dock.send.text() == "Send", "the dock offers Send again")
    assert dock.output.toPlainText() == "chat:hi"
    assert dock.stats.text() == "first token after 12 ms, 2 tokens, 40.0 tokens/s"
    assert dock.send.text() == "Send"

    ended.clear()
    dock.prompt.setPlainText("wait")
    dock.send.click()
    await until(lambda: dock.output.toPlainText() == "chat:wait", "the output streamed in")
    assert dock.send.text() == "Stop"
    dock.send.click()  # Stop
    await ended.wait()
    await until(lambda: dock.send.text() == "Send", "the dock offers Send again")
    assert dock.stats.text() == "stopped"
