"""Two chat models that do not fit together, concurrent clients alternating between them: every
request succeeds, the manager evicts, and never a model that a request holds. A task that cannot
get room waits in its queue, then 503; a full queue is 429."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.serving.conftest import Finished, client_for, leases
from tests.waiting import until
from vramdeck.manager import ModelEvicted


@pytest.fixture
def config(write_config, chat_models):
    # ≈0.54 MB and ≈1.1 MB of weights under a 1.29 MB budget: one at a time.
    return write_config(
        f"""
        models:
          a:
            options:
              small: {{model_id: "{chat_models["templated"]}", vram_gb: 0.0006}}
          b:
            options:
              wide: {{model_id: "{chat_models["plain"]}", vram_gb: 0.0011}}
        inference:
          memory_budget_gb: 0.0012
          evict_verify_timeout_s: 1
        """
    )


async def test_concurrent_clients_alternating_all_succeed_with_evictions(serve, config):
    endpoint = await serve(config)
    admission = endpoint.serving.admission
    evicted_while_held: list[str] = []
    evictions: list[str] = []

    def on_evicted(event: ModelEvicted) -> None:
        evictions.append(event.task)
        if admission.counts_of(event.task).in_flight:
            evicted_while_held.append(event.task)

    endpoint.manager.events.subscribe(on_evicted, ModelEvicted)
    finished = Finished(endpoint.manager)
    client = client_for(endpoint)

    async def pipeline(n: int) -> list[str]:
        answers = []
        for i in range(6):
            task = "ab"[(n + i) % 2]
            reply = await client.chat.completions.create(
                model=task, messages=[{"role": "user", "content": f"frame {i}"}], max_tokens=4,
                temperature=0, stream=bool(i % 3 == 0),
            )  # fmt: skip
            if i % 3 == 0:
                text = "".join([c.choices[0].delta.content or "" async for c in reply if c.choices])
            else:
                text = reply.choices[0].message.content
            answers.append(text)
        return answers

    results = await asyncio.gather(*(pipeline(n) for n in range(4)))
    await finished.wait(24)
    assert {e.status for e in finished.events} == {200}
    assert len(results) == 4 and all(len(r) == 6 for r in results)
    assert len(evictions) >= 2 and set(evictions) <= {"a", "b"}
    assert evicted_while_held == []
    assert admission.counts_of("a").served + admission.counts_of("b").served == 24
    assert set(leases(endpoint.manager).values()) <= {0}


async def test_no_room_waits_then_503_and_a_full_queue_is_429(serve, config):
    endpoint = await serve(config, queue_size=1, queue_timeout_s=0.5, retry_after_s=7)
    manager = endpoint.manager
    await manager.load_model("a")
    manager.set_pinned("a", True)  # b can never make room now
    client = client_for(endpoint)
    ask = {"model": "b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}

    waiting = asyncio.ensure_future(client.chat.completions.create(**ask))
    await until(lambda: endpoint.serving.admission.counts_of("b").queued >= 1, "b is queued")
    with pytest.raises(openai.RateLimitError) as full:
        await client.chat.completions.create(**ask)
    assert full.value.response.headers["Retry-After"] == "7"
    body = full.value.body
    assert isinstance(body, dict) and body["code"] == "queue_full"

    with pytest.raises(openai.InternalServerError) as no_room:
        await waiting
    assert no_room.value.status_code == 503
    assert no_room.value.response.headers["Retry-After"] == "7"
    body = no_room.value.body
    assert isinstance(body, dict)
    assert "no room for its model within 0.5 s" in body["message"]
    assert body["code"] == "no_room"

    manager.set_pinned("a", False)  # room can be made again: b loads, a is evicted
    reply = await client.chat.completions.create(**ask)
    assert reply.choices[0].message.role == "assistant"
    assert list(manager.loaded_models) == ["b"]
