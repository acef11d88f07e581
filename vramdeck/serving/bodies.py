"""Request bodies → typed requests; every wrong field is a 400 naming it (OpenAI's ``param``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from vramdeck.manager.inference import GenerationRequest

from .errors import APIError, bad_request
from .settings import ServeSettings

#: OpenAI's limits: at most four stop sequences.
MAX_STOPS = 4
#: What a completion request's max_tokens is when it gives none (OpenAI's default).
COMPLETION_DEFAULT_MAX_TOKENS = 16
_CHUNK = 64 * 1024


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 before reading when it is over `limit` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    data = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        data += chunk
        if len(data) > limit:
            raise _too_large(None, limit)
    try:
        body = json.loads(data)
    except UnicodeDecodeError:
        raise bad_request("the body is not UTF-8 text; send JSON") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise bad_request(f"malformed JSON: {exc.msg} at {where}") from None
    if not isinstance(body, dict):
        raise bad_request(f"expected a JSON object, got {type(body).__name__}")
    return body


def _too_large(declared: int | None, limit: int) -> APIError:
    size = f"{declared} bytes" if declared is not None else f"more than {limit} bytes"
    return APIError(
        413,
        f"the body is {size}; the limit is {limit} bytes (inference.serving.max_body_bytes)",
        code="body_too_large",
        headers={"Connection": "close"},
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _field(body: Mapping[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in kinds:
        raise bad_request(f"{name}: expected {what}, got a boolean", param=name)
    if not isinstance(value, kinds):
        raise bad_request(f"{name}: expected {what}, got {_type_name(value)}", param=name)
    return value


def _number(body: Mapping[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = _field(body, name, (int, float), f"a number in {low:g}..{high:g}")
    if value is None:
        return default
    if not (math.isfinite(value) and low <= value <= high):
        raise bad_request(f"{name}: expected a number in {low:g}..{high:g}, got {value}", name)
    return float(value)


def model_field(body: Mapping[str, Any]) -> str:
    """The required ``model`` (a task name, or ``task/option``)."""
    value = _field(body, "model", (str,), "a task name (see GET /v1/models)")
    if not value:
        raise bad_request("model: missing; expected a task name (see GET /v1/models)", "model")
    return str(value)


def wants_stream(body: Mapping[str, Any]) -> bool:
    return bool(_field(body, "stream", (bool,), "true or false"))


def include_usage(body: Mapping[str, Any]) -> bool:
    options = _field(body, "stream_options", (dict,), "an object")
    if not options:
        return False
    return bool(_field(options, "include_usage", (bool,), "true or false"))


def _max_tokens(body: Mapping[str, Any], settings: ServeSettings, default: int) -> int:
    name = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    value = _field(body, name, (int,), "a whole number ≥ 1")
    if value is None:
        return min(default, settings.max_tokens)
    if value < 1:
        raise bad_request(f"{name}: expected a whole number ≥ 1, got {value}", param=name)
    if value > settings.max_tokens:
        raise bad_request(
            f"{name}: {value} is over this server's cap of {settings.max_tokens} "
            "(inference.serving.max_tokens)",
            param=name,
            code="max_tokens_over_cap",
        )
    return int(value)


def _stops(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = _field(body, "stop", (str, list), "a string or a list of up to 4 strings")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
        raise bad_request("stop: expected a string or a list of up to 4 strings", param="stop")
    return tuple(s for s in stops if s)


def _common(body: Mapping[str, Any], settings: ServeSettings, default_tokens: int) -> dict:
    n = _field(body, "n", (int,), "1")
    if n is not None and n != 1:
        raise bad_request(f"n: only 1 is supported, got {n}", param="n")
    seed = _field(body, "seed", (int,), "a whole number")
    temperature = _number(body, "temperature", 0, 2, 1.0)
    top_p = _number(body, "top_p", 0, 1, 1.0)
    return {
        "max_tokens": _max_tokens(body, settings, default_tokens),
        "temperature": temperature if top_p > 0 else 0.0,  # top_p 0 keeps only the likeliest
        "top_p": top_p or 1.0,
        "stop": _stops(body),
        "seed": seed,
    }


def _content(message: Mapping[str, Any], index: int) -> str:
    param = f"messages[{index}].content"
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise bad_request(f"{param}: only text parts are supported", param=param)
            if not isinstance(part.get("text"), str):
                raise bad_request(f"{param}: a text part needs a string 'text'", param=param)
            texts.append(part["text"])
        return "".join(texts)
    raise bad_request(
        f"{param}: expected a string or a list of text parts, got {_type_name(content)}", param
    )


def chat_request(body: Mapping[str, Any], settings: ServeSettings) -> GenerationRequest:
    """A chat completion request: ``messages`` (role and text) and the sampling fields."""
    messages = _field(body, "messages", (list,), "a list of messages")
    if not messages:
        raise bad_request("messages: missing or empty; expected a list of messages", "messages")
    pairs = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or not role:
            raise bad_request(f"messages[{i}].role: expected a string", f"messages[{i}].role")
        pairs.append((role, _content(message, i)))
    common = _common(body, settings, settings.default_max_tokens)
    return GenerationRequest(messages=tuple(pairs), **common)


def completion_request(body: Mapping[str, Any], settings: ServeSettings) -> GenerationRequest:
    """A text completion request: ``prompt`` (a string, or a list of one) and sampling fields."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_request(
            f"prompt: expected a string (or a list of one), got {_type_name(prompt)}", "prompt"
        )
    if body.get("echo") or body.get("suffix") or body.get("best_of", 1) != 1:
        raise bad_request("echo, suffix and best_of are not supported", param="echo")
    common = _common(body, settings, COMPLETION_DEFAULT_MAX_TOKENS)
    return GenerationRequest(prompt=prompt, **common)


@dataclass(frozen=True)
class EmbeddingRequest:
    """Texts to embed as one batch, and how to encode the vectors (float or base64)."""

    texts: tuple[str, ...]
    encoding_format: str = "float"
    dimensions: int | None = None


def embedding_request(body: Mapping[str, Any], settings: ServeSettings) -> EmbeddingRequest:
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad_request(
            "input: expected a string or a non-empty list of strings (token arrays are not "
            f"supported), got {_type_name(value)}",
            param="input",
        )
    if len(texts) > settings.max_inputs:
        raise bad_request(
            f"input: {len(texts)} inputs; at most {settings.max_inputs} in one request "
            "(inference.serving.max_inputs)",
            param="input",
        )
    encoding = _field(body, "encoding_format", (str,), "'float' or 'base64'") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request(
            f"encoding_format: expected 'float' or 'base64', got {encoding!r}", "encoding_format"
        )
    dimensions = _field(body, "dimensions", (int,), "a whole number")
    return EmbeddingRequest(tuple(texts), encoding, dimensions)


__all__ = [
    "EmbeddingRequest",
    "chat_request",
    "completion_request",
    "embedding_request",
    "include_usage",
    "model_field",
    "read_json",
    "wants_stream",
]
