"""OpenAI's response and stream-chunk shapes, built from vramdeck's results."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from vramdeck.manager.inference import FinishReason, Generation

DONE = b"data: [DONE]\n\n"


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying `data` as JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int = 0) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _finish(reason: FinishReason) -> str:
    return "stop" if reason is FinishReason.CANCELLED else reason.value


@dataclass(frozen=True)
class Answer:
    """The id, time and model name every piece of one answer repeats."""

    chat: bool
    model: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def _object(self) -> str:
        return "chat.completion" if self.chat else "text_completion"

    def _head(self, obj: str) -> dict[str, Any]:
        prefix = "chatcmpl-" if self.chat else "cmpl-"
        return {"id": prefix + self.id, "object": obj, "created": self.created, "model": self.model}

    def whole(self, result: Generation) -> dict[str, Any]:
        """The answer to a request that did not stream."""
        finish = _finish(result.finish_reason)
        if self.chat:
            message = {"role": "assistant", "content": result.text}
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": result.text, "finish_reason": finish, "logprobs": None}
        usage_ = usage(result.prompt_tokens, result.completion_tokens)
        return {**self._head(self._object), "choices": [choice], "usage": usage_}

    def chunk(self, text: str | None, finish: FinishReason | None = None) -> dict[str, Any]:
        """A stream chunk: `text` (None: the chat's opening role chunk) or the finish."""
        reason = _finish(finish) if finish is not None else None
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if text is None else {}
            if text:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
            return {**self._head("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}
        return {**self._head("text_completion"), "choices": [choice]}

    def usage_chunk(self, result: Generation) -> dict[str, Any]:
        """The last chunk when ``stream_options.include_usage`` asked for it."""
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        usage_ = usage(result.prompt_tokens, result.completion_tokens)
        return {**self._head(obj), "choices": [], "usage": usage_}


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings(
    model: str, vectors: list[list[float]], prompt_tokens: int, encoding: str
) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, encoding)}
        for i, v in enumerate(vectors)
    ]
    return {"object": "list", "data": data, "model": model, "usage": usage(prompt_tokens)}


__all__ = ["DONE", "Answer", "embeddings", "sse", "usage"]
