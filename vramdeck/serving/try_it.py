"""The panel's Try-it: one request through the endpoint's own path (model lookup, admission and
lease, the inference workers, the request events) without HTTP, its output as it comes.

Generation yields text pieces, then a `TryItDone`; an embedding task embeds each line of the
text as one batch and yields a short report of the vectors and their cosine similarities.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from opentelemetry.trace import SpanKind

from vramdeck.manager.inference import GenerationRequest, ModelKind

from . import catalog
from . import telemetry as tm
from .app import ServingApp
from .errors import APIError
from .events import Route
from .record import RequestRecord

#: What Try-it generates at most.
TRY_IT_MAX_TOKENS = 128


@dataclass(frozen=True)
class TryItDone:
    """The end of a Try-it request: time to the first piece, tokens made, and their rate."""

    time_to_first_token_s: float | None
    tokens: int
    tokens_per_second: float | None


class TryItError(Exception):
    """The request could not run; the message says why (as the endpoint would answer)."""


async def try_it(
    serving: ServingApp, task: str, text: str, *, max_tokens: int = TRY_IT_MAX_TOKENS
) -> AsyncIterator[str | TryItDone]:
    """Run `text` on `task` as the endpoint would: pieces of output, then a TryItDone."""
    try:
        name, option, abilities = catalog.resolve(serving.manager, task)
    except APIError as exc:
        raise TryItError(exc.message) from None
    if abilities.kind not in (ModelKind.CAUSAL_LM, ModelKind.ENCODER):
        reason = (
            "it is served by another process: call the endpoint"
            if abilities.servable
            else (abilities.reason or "it does nothing the endpoint serves")
        )
        raise TryItError(f"Try-it runs models in this process; {task}: {reason}")
    route = Route.CHAT if abilities.kind is ModelKind.CAUSAL_LM else Route.EMBEDDINGS
    with tm.tracer().start_as_current_span("try-it", kind=SpanKind.INTERNAL) as span:
        record = RequestRecord(route, serving.manager.events, span)
        status = 500
        try:
            async with serving.admission.hold(name) as held:
                record.began(name, option.name, held.queue_wait_s)
                if route is Route.CHAT:
                    request = GenerationRequest(
                        messages=(("user", text),), max_tokens=max_tokens, temperature=0.7
                    )
                    async for item in _generate(serving, name, held.model, request, record):
                        yield item
                else:
                    yield await _embed(serving, name, held.model, text, record)
                    yield TryItDone(None, 0, None)
            status = 200
        finally:
            record.finish(status, "TRY-IT", route.value)


async def _generate(
    serving: ServingApp, task: str, model: object, request: GenerationRequest, record: RequestRecord
) -> AsyncIterator[str | TryItDone]:
    started = time.monotonic()
    stream = serving.inference.stream(task, model, request)
    try:
        async for piece in stream:
            record.token()
            yield piece
        result = await stream.result()
    finally:
        await stream.aclose()
    record.tokens(result.prompt_tokens, result.completion_tokens)
    first = record.first_token_at
    spent = time.monotonic() - (first or started)
    rate = result.completion_tokens / spent if first is not None and spent > 0 else None
    yield TryItDone(first - started if first else None, result.completion_tokens, rate)


async def _embed(
    serving: ServingApp, task: str, model: object, text: str, record: RequestRecord
) -> str:
    sentences = [line.strip() for line in text.splitlines() if line.strip()]
    if not sentences:
        raise TryItError("type one sentence per line to embed")
    result = await serving.inference.embed(task, model, sentences)
    record.tokens(result.prompt_tokens, 0)
    lines = [f"{len(result.vectors)} vectors of {len(result.vectors[0])} dimensions"]
    for i, a in enumerate(result.vectors):
        for j in range(i + 1, len(result.vectors)):
            similarity = sum(x * y for x, y in zip(a, result.vectors[j], strict=True))
            lines.append(f"cosine(line {i + 1}, line {j + 1}) = {similarity:.3f}")
    return "\n".join(lines)


__all__ = ["TRY_IT_MAX_TOKENS", "TryItDone", "TryItError", "try_it"]
