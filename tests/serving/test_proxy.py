"""Proxied tasks: a managed server (a fake vLLM process) loaded on the first request, streams
passed on as they come; an external OpenAI-compatible API with vramdeck adding its key."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.serving.conftest import Finished, client_for, leases

FAKE = str(Path(__file__).with_name("fake_openai.py"))
KEY = "sk-upstream-secret-1234"


@pytest.fixture
async def external_api() -> AsyncIterator[str]:
    """A fake external API on loopback that wants KEY; its base URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, FAKE, "--port", "0", "--require-key", KEY, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode()
    port = int(line.split()[-1])
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    await process.wait()


@pytest.fixture
def config(write_config, external_api):
    server = [sys.executable, FAKE, "--port", "{port}", "--host", "{host}"]
    return write_config(
        f"""
        models:
          served:
            options:
              vllm: {{model_id: served-model-7b, framework: vllm, device: cpu, vram_gb: 0.01,
                      server_command: {server!r}, startup_timeout_s: 20, stop_timeout_s: 2}}
          remote:
            options:
              api: {{model_id: remote-model, framework: external_api, provider: openai,
                     api_endpoint: "{external_api}", api_key_env: FAKE_UPSTREAM_KEY,
                     requires_api_key: true}}
        """
    )


async def test_a_managed_server_is_loaded_and_proxied_with_streams_as_they_come(serve, config):
    endpoint = await serve(config)
    finished = Finished(endpoint.manager)
    client = client_for(endpoint)
    assert "served" not in endpoint.manager.loaded_models
    reply = await client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": "x"}]
    )
    assert reply.choices[0].message.content == "model=served-model-7b auth=none"
    handle = endpoint.manager.loaded_models["served"]  # loaded by the request
    stream = await client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": "x"}], stream=True
    )
    pieces = stream.__aiter__()
    first = await pieces.__anext__()  # arrives while the server holds back the rest
    assert first.choices[0].delta.content == "model=served-model-7b auth=none"
    assert leases(endpoint.manager) == {"served": 1}  # held for the stream's whole life
    async with aiohttp.ClientSession() as session, session.get(handle.url + "/release") as r:
        assert r.status == 200
    rest = [chunk.choices[0].delta.content async for chunk in pieces]
    assert rest == [" second", " third"]
    await finished.wait(2)
    assert leases(endpoint.manager) == {"served": 0}
    embedded = await client.embeddings.create(model="served", input="x", encoding_format="float")
    assert embedded.data[0].embedding == [1.0, 0.0]


async def test_an_external_api_gets_the_key_from_the_environment(serve, config, monkeypatch):
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", KEY)
    endpoint = await serve(config)
    client = client_for(endpoint, api_key="the-client-has-no-real-key")
    reply = await client.chat.completions.create(
        model="remote", messages=[{"role": "user", "content": "x"}]
    )
    assert reply.choices[0].message.content == "model=remote-model auth=ok"
    entries = await client.models.list()
    assert KEY not in entries.model_dump_json()


async def test_an_external_api_without_its_key_is_a_503_naming_the_variable(
    serve, config, monkeypatch
):
    monkeypatch.delenv("FAKE_UPSTREAM_KEY", raising=False)
    endpoint = await serve(config)
    base = endpoint.url
    body = {"model": "remote", "messages": [{"role": "user", "content": "x"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + "/chat/completions", json=body) as r,
    ):
        answer = await r.json()
    assert r.status == 503 and "FAKE_UPSTREAM_KEY" in answer["error"]["message"]


async def test_a_wrong_upstream_key_passes_the_upstream_status_through(serve, config, monkeypatch):
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", "sk-wrong")
    endpoint = await serve(config)
    body = {"model": "remote", "messages": [{"role": "user", "content": "x"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(endpoint.url + "/chat/completions", json=body) as r,
    ):
        text = await r.text()
    assert r.status == 401 and "auth=wrong" in text and "sk-wrong" not in text


async def test_a_dropped_proxied_stream_lets_go_at_the_next_chunk(serve, config):
    endpoint = await serve(config)
    finished = Finished(endpoint.manager)
    await endpoint.manager.load_model("served")
    handle = endpoint.manager.loaded_models["served"]
    body = b'{"model": "served", "messages": [{"role": "user", "content": "x"}], "stream": true}'
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    while b"data:" not in await reader.readline():
        pass
    writer.transport.abort()
    async with aiohttp.ClientSession() as session, session.get(handle.url + "/release") as r:
        assert r.status == 200  # the upstream sends its next chunk: the relay finds no client
    await finished.wait(1)
    assert finished.events[0].status == 499
    assert leases(endpoint.manager) == {"served": 0}
