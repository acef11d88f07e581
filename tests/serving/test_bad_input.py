"""Every bad input gets OpenAI's error JSON with the right status, and the server keeps serving
with no model left held; a dropped stream stops its generation."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import openai
import pytest

from tests.serving.conftest import BIG_LLM, Finished, client_for, leases
from vramdeck.serving import Endpoint, RequestFinished, ServeError, ServeSettings


@pytest.fixture
def config(write_config, local_tasks):
    limits = "inference:\n  serving: {max_body_bytes: 2000, max_tokens: 50}\n"
    return write_config(local_tasks + BIG_LLM + limits)


async def post(endpoint: Endpoint, path: str, data: bytes | str, **kw) -> tuple[int, dict, dict]:
    assert endpoint.url is not None  # it is serving
    async with (
        aiohttp.ClientSession() as session,
        session.post(endpoint.url.removesuffix("/v1") + path, data=data, **kw) as response,
    ):
        return response.status, await response.json(), dict(response.headers)


def chat_body(**fields) -> str:
    return json.dumps({"model": "chat", "messages": [{"role": "user", "content": "Hi"}], **fields})


CASES = [
    ("/v1/chat/completions", "{not json", 400, "malformed JSON", None),
    ("/v1/chat/completions", "[1, 2]", 400, "expected a JSON object", None),
    ("/v1/chat/completions", json.dumps({"messages": []}), 400, "model: missing", "model"),
    ("/v1/chat/completions", json.dumps({"model": "chat"}), 400, "messages: missing", "messages"),
    (
        "/v1/chat/completions",
        chat_body(max_tokens="ten"),
        400,
        "max_tokens: expected a whole",
        "max_tokens",
    ),
    (
        "/v1/chat/completions",
        chat_body(temperature=9),
        400,
        "temperature: expected a number in 0..2",
        "temperature",
    ),
    (
        "/v1/chat/completions",
        chat_body(messages=[{"content": "x"}]),
        400,
        "messages[0].role",
        "messages[0].role",
    ),
    (
        "/v1/chat/completions",
        chat_body(stream="yes"),
        400,
        "stream: expected true or false",
        "stream",
    ),
    ("/v1/chat/completions", chat_body(n=2), 400, "only 1 is supported", "n"),
    (
        "/v1/chat/completions",
        chat_body(max_tokens=51),
        400,
        "over this server's cap of 50",
        "max_tokens",
    ),
    (
        "/v1/chat/completions",
        chat_body(model="nope"),
        404,
        "tasks are: chat, embed, big_llm",
        "model",
    ),
    (
        "/v1/chat/completions",
        chat_body(model="chat/nope"),
        404,
        "options: templated, plain",
        "model",
    ),
    (
        "/v1/chat/completions",
        chat_body(model="chat/plain"),
        409,
        "has 'templated' selected",
        "model",
    ),
    ("/v1/chat/completions", chat_body(model="embed"), 400, "it can do embedding", "model"),
    (
        "/v1/embeddings",
        json.dumps({"model": "chat", "input": "x"}),
        400,
        "it can do chat, completion",
        "model",
    ),
    (
        "/v1/embeddings",
        json.dumps({"model": "embed", "input": [1, 2]}),
        400,
        "token arrays are not supported",
        "input",
    ),
    (
        "/v1/completions",
        json.dumps({"model": "chat", "prompt": 5}),
        400,
        "prompt: expected a string",
        "prompt",
    ),
    ("/v1/chat/completions", chat_body(model="big_llm"), 503, "cannot load here: vLLM", None),
    (
        "/v1/completions",
        json.dumps({"model": "chat", "prompt": "Hello " * 40, "max_tokens": 50}),
        400,
        "context of 128 tokens",
        "prompt",
    ),
]


async def test_every_bad_input_is_an_openai_error_and_nothing_stays_held(serve, config):
    endpoint = await serve(config)
    for path, body, status, message, param in CASES:
        got, answer, headers = await post(endpoint, path, body)
        assert got == status, (body, answer)
        error = answer["error"]
        assert message in error["message"], (body, error)
        assert error["param"] == param and set(error) == {"message", "type", "param", "code"}
        assert headers["Content-Type"].startswith("application/json")
    # Still serving, and every model the requests loaded is free again.
    client = client_for(endpoint)
    ok = await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert ok.choices[0].message.role == "assistant"
    assert leases(endpoint.manager) == {"chat": 0}


async def test_a_body_over_the_limit_is_refused_before_it_is_read(serve, config):
    endpoint = await serve(config)
    big = chat_body(padding="x" * 5000)
    status, answer, _ = await post(endpoint, "/v1/chat/completions", big)
    assert status == 413 and "limit is 2000 bytes" in answer["error"]["message"]

    async def chunks():  # no Content-Length: refused once the limit is passed
        for _ in range(100):
            yield b"x" * 1000

    status, answer, _ = await post(endpoint, "/v1/chat/completions", chunks())
    assert status == 413 and "more than 2000 bytes" in answer["error"]["message"]
    assert endpoint.manager.loaded_models == {}  # nothing was loaded for them


async def test_the_openai_client_sees_the_errors_as_its_exceptions(serve, config):
    endpoint = await serve(config)
    client = client_for(endpoint)
    with pytest.raises(openai.NotFoundError) as found:
        await client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    body = found.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="can do embedding"):
        await client.chat.completions.create(
            model="embed", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.InternalServerError, match="vLLM"):
        await client.completions.create(model="big_llm", prompt="x")


async def test_unknown_routes_and_methods_answer_json(serve, config):
    endpoint = await serve(config)
    base = endpoint.url.removesuffix("/v1")
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/v1/nothing") as response:
            assert response.status == 404
            assert (await response.json())["error"]["type"] == "not_found_error"
        async with session.get(base + "/v1/chat/completions") as response:
            assert response.status == 405
            assert "error" in await response.json()
        async with session.get(base + "/v1/models/nope") as response:
            assert response.status == 404


async def test_a_dropped_stream_stops_the_generation_and_lets_go(serve, config):
    endpoint = await serve(config)
    finished = asyncio.Event()
    seen: list[RequestFinished] = []

    def on_finished(event):
        seen.append(event)
        finished.set()

    endpoint.manager.events.subscribe(on_finished, RequestFinished)
    body = json.dumps(
        {"model": "chat", "prompt": "Hello", "max_tokens": 50, "stream": True,
         "temperature": 1.0, "seed": 3}
    )  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    while b"data:" not in await reader.readline():  # the first piece arrived: hang up
        pass
    writer.transport.abort()
    await finished.wait()
    (event,) = seen
    assert event.status == 499 and event.completion_tokens < 50
    assert leases(endpoint.manager) == {"chat": 0}
    assert endpoint.inference.workers.devices == ["cpu"]
    # The worker is idle again: a new request is answered at once.
    client = client_for(endpoint)
    again = await client.completions.create(model="chat", prompt="Hi", max_tokens=2)
    assert again.choices[0].text is not None


async def test_off_loopback_needs_the_token(serve, config, monkeypatch):
    from vramdeck.manager import Ledger, ModelManager

    monkeypatch.delenv("VRAMDECK_API_KEY", raising=False)
    manager = ModelManager(config, ledger=Ledger(None))
    exposed = Endpoint(manager, ServeSettings(host="0.0.0.0", port=0))
    with pytest.raises(ServeError, match="needs a token: set VRAMDECK_API_KEY"):
        await exposed.start()
    await manager.shutdown()

    monkeypatch.setenv("VRAMDECK_API_KEY", "s3cret-token")
    endpoint = await serve(config, host="0.0.0.0")
    assert endpoint.guarded
    url = f"http://127.0.0.1:{endpoint.port}/v1"
    for key in ("wrong", "s3cret-tokenX", ""):
        wrong = openai.AsyncOpenAI(base_url=url, api_key=key or "-", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.list()
    right = openai.AsyncOpenAI(base_url=url, api_key="s3cret-token", max_retries=0)
    assert next(m.id for m in (await right.models.list()).data) == "chat"
    async with aiohttp.ClientSession() as session, session.get(url + "/models") as response:
        assert response.status == 401  # no Authorization header at all
        assert "s3cret" not in await response.text()


async def test_a_port_in_use_is_a_clear_error_naming_it(config, make_manager):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        manager = make_manager(config)
        endpoint = Endpoint(manager, ServeSettings(port=port))
        with pytest.raises(ServeError, match=f"port {port} is in use"):
            await endpoint.start()


def test_bad_serving_settings_name_the_key(write_config):
    from vramdeck.manager.config import ConfigError, load_config

    def inference(serving: str):
        text = (
            f"models:\n  t: {{options: {{a: {{model_id: x}}}}}}\ninference:\n  serving: {serving}\n"
        )
        return load_config(write_config(text)).inference

    with pytest.raises(
        ConfigError, match=r"inference.serving.port: expected a whole number in 0..65535"
    ):
        ServeSettings.from_config(inference("{port: high}"), file="models.yaml")
    with pytest.raises(ConfigError, match=r"inference\.serving\.prot: unknown key"):
        ServeSettings.from_config(inference("{prot: 1}"))
    with pytest.raises(ConfigError, match="--port: expected a whole number"):
        ServeSettings.from_config(inference("{}"), port=-1)
    settings = ServeSettings.from_config(inference("{port: 9000, queue_size: 2}"), port=None)
    assert (settings.port, settings.queue_size, settings.host) == (9000, 2, "127.0.0.1")


async def test_a_generation_failing_mid_stream_ends_it_with_an_error_and_lets_go(serve, config):
    endpoint = await serve(config)
    finished = Finished(endpoint.manager)
    client = client_for(endpoint)
    await client.completions.create(model="chat", prompt="x", max_tokens=1)  # loaded now
    model = endpoint.manager.loaded_models["chat"]
    original, calls = model.forward, []

    def failing_forward(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("the device fell over")
        return original(*args, **kwargs)

    model.forward = failing_forward
    stream = await client.completions.create(
        model="chat", prompt="Hello", max_tokens=20, temperature=0, stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    await finished.wait(2)
    assert finished.events[-1].status == 500
    assert leases(endpoint.manager) == {"chat": 0}
    del model.forward
    again = await client.completions.create(model="chat", prompt="Hi", max_tokens=2)
    assert again.usage.completion_tokens >= 1
