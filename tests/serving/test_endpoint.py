"""The endpoint with the real openai client, on small real models: every route, plain and streamed."""

from __future__ import annotations

import base64
import math
import struct

import pytest
import torch

from tests.serving.conftest import BIG_LLM, Finished, client_for, leases
from tests.serving.models import save_classifier
from vramdeck.serving import RequestFinished, RequestStarted, Route


@pytest.fixture
def config(write_config, local_tasks, tmp_path):
    classifier = save_classifier(tmp_path / "classifier")
    classify = (
        f'  classify:\n    options:\n      bert: {{model_id: "{classifier}", vram_gb: 0.001}}\n'
    )
    return write_config(local_tasks + classify + BIG_LLM)


async def test_models_lists_every_task_with_vramdeck_fields(serve, config):
    endpoint = await serve(config)
    client = client_for(endpoint)
    await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Hello"}], max_tokens=2
    )
    page = await client.models.list()
    entries = {m.id: m.model_extra["vramdeck"] for m in page.data}
    assert list(entries) == ["chat", "embed", "classify", "big_llm"]
    chat = entries["chat"]
    assert chat["state"] == "loaded" and chat["selected"] == "templated"
    assert chat["device"] == "cpu" and chat["measured_bytes"] > 100_000
    assert chat["abilities"] == ["chat", "completion"] and chat["loadable"]
    assert chat["requests"]["served"] == 1 and chat["requests"]["in_flight"] == 0
    assert entries["embed"]["abilities"] == ["embedding"]
    assert entries["embed"]["state"] == "unloaded" and entries["embed"]["measured_bytes"] is None
    assert not entries["classify"]["servable"]
    assert "sequence classifier" in entries["classify"]["not_servable_reason"]
    assert not entries["big_llm"]["loadable"]
    assert "vLLM" in entries["big_llm"]["unavailable_reason"]
    one = await client.models.retrieve("chat")
    assert one.id == "chat"


async def test_chat_plain_and_streamed_give_the_same_greedy_text(serve, config):
    endpoint = await serve(config)
    finished = Finished(endpoint.manager)
    client = client_for(endpoint)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    whole = await client.chat.completions.create(
        model="chat", messages=messages, max_tokens=12, temperature=0
    )
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert whole.model == "chat" and whole.id.startswith("chatcmpl-")
    assert whole.usage.prompt_tokens > 5
    assert 1 <= whole.usage.completion_tokens <= 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    stream = await client.chat.completions.create(
        model="chat", messages=messages, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == choice.finish_reason and not any(finishes[:-1])
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    await finished.wait(2)
    assert leases(endpoint.manager) == {"chat": 0}


async def test_chat_text_is_what_generate_gives_in_process(serve, config, chat_models):
    from transformers import AutoTokenizer

    endpoint = await serve(config)
    client = client_for(endpoint)
    answer = await client.completions.create(
        model="chat/templated", prompt="The camera saw", max_tokens=10, temperature=0
    )
    model = endpoint.manager.loaded_models["chat"]
    tokenizer = AutoTokenizer.from_pretrained(chat_models["templated"])
    ids = tokenizer("The camera saw", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=10, do_sample=False, pad_token_id=0)
    expected = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.choices[0].text == expected
    assert answer.object == "text_completion" and answer.id.startswith("cmpl-")


async def test_completions_stream(serve, config):
    endpoint = await serve(config)
    client = client_for(endpoint)
    whole = await client.completions.create(
        model="chat", prompt="Hello", max_tokens=8, temperature=0
    )
    stream = await client.completions.create(
        model="chat", prompt="Hello", max_tokens=8, temperature=0, stream=True
    )
    pieces = [chunk.choices[0].text async for chunk in stream]
    assert "".join(pieces) == whole.choices[0].text
    assert len(pieces) >= 2  # text came in pieces, then the finish chunk


async def test_sampling_with_a_seed_repeats_and_stop_cuts(serve, config):
    endpoint = await serve(config)
    client = client_for(endpoint)
    ask = {"model": "chat", "prompt": "Two trucks", "max_tokens": 12, "temperature": 1.2}
    first = await client.completions.create(**ask, seed=5)
    second = await client.completions.create(**ask, seed=5)
    assert first.choices[0].text == second.choices[0].text
    text = first.choices[0].text
    assert len(text) >= 3, "the random model said too little to cut"
    cut = await client.completions.create(**ask, seed=5, stop=[text[1:3]])
    assert cut.choices[0].text == text[: text.find(text[1:3])]
    assert cut.choices[0].finish_reason == "stop"


def cosine(a, b) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embeddings_with_the_real_minilm(serve, config):
    endpoint = await serve(config)
    client = client_for(endpoint)
    sentences = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar in front of an audience.",
        "The quarterly tax report is due next week.",
    ]
    # The openai client asks for base64 and decodes it; float is asked for explicitly.
    result = await client.embeddings.create(model="embed", input=sentences)
    floats = await client.embeddings.create(model="embed", input=sentences, encoding_format="float")
    vectors = [d.embedding for d in result.data]
    assert [d.index for d in result.data] == [0, 1, 2] and len(vectors[0]) == 384
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert all(
        math.isclose(x, y, abs_tol=1e-6)
        for x, y in zip(vectors[0], floats.data[0].embedding, strict=True)
    )
    assert result.usage.prompt_tokens == result.usage.total_tokens > 15
    one = await client.embeddings.create(model="embed", input="A single sentence.")
    assert len(one.data) == 1


async def test_events_and_spans_carry_counts_never_text(serve, config, otel):
    exporter, _ = otel
    endpoint = await serve(config)
    seen: list[RequestStarted | RequestFinished] = []
    endpoint.manager.events.subscribe(seen.append, RequestStarted, RequestFinished)
    client = client_for(endpoint)
    secret_prompt = "zebra-prompt-text"
    answer = await client.completions.create(
        model="chat", prompt=secret_prompt, max_tokens=4, temperature=0
    )
    started, finished = seen
    assert isinstance(started, RequestStarted) and started.route is Route.COMPLETIONS
    assert isinstance(finished, RequestFinished)
    assert finished.request_id == started.request_id and finished.status == 200
    assert finished.completion_tokens == answer.usage.completion_tokens
    assert finished.prompt_tokens == answer.usage.prompt_tokens
    assert finished.time_to_first_token_s is None and finished.duration_s > 0  # not streamed
    spans = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/completions"]
    assert len(spans) == 1
    attrs = dict(spans[0].attributes)
    assert attrs["http.request.method"] == "POST" and attrs["http.response.status_code"] == 200
    assert attrs["http.route"] == "/v1/completions" and attrs["vramdeck.task"] == "chat"
    assert attrs["server.address"] == "127.0.0.1"
    stream = await client.completions.create(
        model="chat", prompt=secret_prompt, max_tokens=4, temperature=0, stream=True
    )
    streamed = "".join([chunk.choices[0].text async for chunk in stream])
    last = seen[-1]
    assert isinstance(last, RequestFinished) and last.time_to_first_token_s is not None
    assert 0 < last.time_to_first_token_s <= last.duration_s
    shown = repr(seen) + repr([dict(s.attributes) for s in exporter.get_finished_spans()])
    assert secret_prompt not in shown
    assert len(streamed) < 3 or streamed not in shown  # the output is not shown either


def test_base64_is_little_endian_float32():
    from vramdeck.serving.openai_format import embeddings

    data = embeddings("m", [[0.5, -1.0]], 3, "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(data)) == (0.5, -1.0)


async def test_metrics_record_duration_first_token_rate_and_queue_wait(serve, config, otel):
    _, reader = otel
    endpoint = await serve(config)
    client = client_for(endpoint)
    stream = await client.completions.create(
        model="chat", prompt="Hello", max_tokens=6, temperature=0, stream=True
    )
    async for _ in stream:
        pass
    await client.models.list()
    points: dict[str, list] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    # Points are cumulative over the session (other tests' requests too): look for this one's.
    durations = points["http.server.request.duration"]
    answered = {
        (p.attributes["http.request.method"], p.attributes["http.route"])
        for p in durations
        if p.attributes["http.response.status_code"] == 200
    }
    assert {("POST", "/v1/completions"), ("GET", "/v1/models")} <= answered
    for name in ("vramdeck.serve.time_to_first_token", "vramdeck.serve.queue_wait",
                 "vramdeck.serve.tokens_per_second"):  # fmt: skip
        (point,) = [p for p in points[name] if p.attributes["vramdeck.task"] == "chat"]
        assert point.count >= 1 and point.sum > 0
