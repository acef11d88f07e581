"""Stopping the endpoint with a stream in flight: the stream ends, its generation stops, the
model is released, and nothing is left running in the inference worker."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.serving.conftest import Finished, leases


@pytest.fixture
def config(write_config, chat_models):
    return write_config(
        f"""
        models:
          chat:
            options:
              templated: {{model_id: "{chat_models["templated"]}", vram_gb: 0.001}}
        inference:
          serving: {{drain_timeout_s: 0}}
        """
    )


async def test_stop_ends_a_stream_in_flight_and_lets_go(serve, config):
    endpoint = await serve(config)
    finished = Finished(endpoint.manager)
    body = json.dumps({"model": "chat", "prompt": "Hello", "max_tokens": 100, "stream": True})
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    while b"data:" not in await reader.readline():  # streaming now
        pass
    await endpoint.stop()
    await finished.wait(1)
    (event,) = finished.events
    assert event.status == 503 and event.completion_tokens < 100
    assert leases(endpoint.manager) == {"chat": 0}
    rest = await reader.read()  # the connection was closed by the server
    assert b"[DONE]" not in rest
    writer.close()
