"""Requests for managed servers (vLLM, SGLang) and OpenAI-compatible external APIs, proxied.

The body goes on as the client sent it, with ``model`` replaced by the name the upstream knows;
a stream is passed through chunk by chunk as it comes. For an external API vramdeck adds the key
from the environment, so the client never holds it; no key or upstream header is ever logged or
put in an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from vramdeck.manager.loaders import ExternalAPIConfig, ServerHandle

from .errors import APIError, ErrorType

logger = logging.getLogger(__name__)

#: Upstream answers that are not streams are read whole, up to this size.
MAX_UPSTREAM_BODY = 64 * 2**20
_PASSED_HEADERS = ("Content-Type", "Retry-After", "X-Request-Id")


class ClientGone(Exception):
    """The client went away while a stream was relayed; `response` is the one already sent."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("the client went away")
        self.response = response


@dataclass(frozen=True)
class Upstream:
    """Where a proxied request goes: the API's base URL (``…/v1``) and the model name there."""

    base_url: str
    model: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


def upstream_of(model: Any) -> Upstream | None:
    """The upstream of a loaded server or external API, or None for an in-process model."""
    if isinstance(model, ServerHandle):
        return Upstream(model.base_url, model.model)
    if isinstance(model, ExternalAPIConfig):
        if not model.endpoint:
            raise APIError(
                503, f"{model.model_id}: no api_endpoint is configured", type=ErrorType.SERVER
            )
        key = model.api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return Upstream(model.endpoint.rstrip("/"), model.model_id, headers)
    return None


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    upstream: Upstream,
    path: str,
    body: dict[str, Any],
) -> web.StreamResponse:
    """POST `body` to `upstream` + `path` (e.g. ``/chat/completions``) and relay the answer."""
    sent = {**body, "model": upstream.model}
    url = upstream.base_url + path
    try:
        async with session.post(url, json=sent, headers=dict(upstream.headers)) as answer:
            headers = {h: answer.headers[h] for h in _PASSED_HEADERS if h in answer.headers}
            if answer.content_type == "text/event-stream":
                return await _relay_stream(request, answer, headers)
            data = await answer.content.read(MAX_UPSTREAM_BODY + 1)
            if len(data) > MAX_UPSTREAM_BODY:
                raise APIError(502, f"the upstream's answer is over {MAX_UPSTREAM_BODY} bytes",
                               type=ErrorType.SERVER)  # fmt: skip
            return web.Response(body=data, status=answer.status, headers=headers)
    except aiohttp.ClientError as exc:
        # The message names the host and the failure only (never headers, so never the key).
        logger.warning("proxy to %s failed: %s", url, type(exc).__name__)
        raise APIError(
            502, f"the upstream at {upstream.base_url} did not answer: {type(exc).__name__}",
            type=ErrorType.SERVER, code="upstream_unreachable",
        ) from None  # fmt: skip


async def _relay_stream(
    request: web.Request, answer: aiohttp.ClientResponse, headers: dict[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(status=answer.status, headers=headers)
    response.headers["Cache-Control"] = "no-cache"
    try:
        await response.prepare(request)
        async for chunk in answer.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:  # leaving the `async with` closes the upstream's stream
        raise ClientGone(response) from None
    return response


__all__ = ["MAX_UPSTREAM_BODY", "ClientGone", "Upstream", "forward", "upstream_of"]
