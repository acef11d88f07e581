"""Text generation with transformers ``generate``: prompts, stop strings, streaming, cancelling.

Everything here blocks and runs in a device's inference worker. Text reaches the caller through
`on_text`, called in the worker thread with each new piece as it is generated; the caller hands
it to its loop. A set `cancel` event stops the generation after the token in progress.

Chat prompts use the tokenizer's chat template. A tokenizer without one gets vramdeck's plain
fallback: one ``role: content`` line per message, then ``assistant:`` to be continued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class InferenceInputError(ValueError):
    """A request the model cannot take as it is (too long, wrong content); says what is wrong."""


class FinishReason(StrEnum):
    """Why generation ended, as OpenAI names it."""

    STOP = "stop"  # end of sequence, or a stop string
    LENGTH = "length"  # max_tokens reached
    CANCELLED = "cancelled"  # the caller stopped it (a client that went away)


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: a plain `prompt`, or chat `messages` (role and text content)."""

    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    """The outcome: the text (stop string excluded), token counts, and why it ended."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


def fallback_chat_prompt(messages: Sequence[tuple[str, str]]) -> str:
    """vramdeck's chat prompt for tokenizers with no chat template (documented in serving.md)."""
    lines = [f"{role}: {content}" for role, content in messages]
    return "\n".join([*lines, "assistant:"])


def prompt_text(tokenizer: Any, request: GenerationRequest) -> str:
    """The text the model continues: the prompt, or the messages through the chat template."""
    if request.messages is None:
        return request.prompt or ""
    if getattr(tokenizer, "chat_template", None):
        chat = [{"role": role, "content": content} for role, content in request.messages]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return str(text)
    return fallback_chat_prompt(request.messages)


def context_length(model: Any) -> int | None:
    """How many positions the model takes (prompt and output together), when it says."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` may still become a stop string (or a character)."""
    held = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:n]):
                held = n
                break
    # Byte-level tokens can split a character: its replacement mark waits for the rest.
    while held < len(text) and text[len(text) - held - 1] == "\ufffd":
        held += 1
    return held


@dataclass
class _Watcher:
    """Called by ``generate`` after every token: emits new text, finds stops, obeys `cancel`.

    Only the tokens since the last newline are decoded again at each step (the text before it
    is kept), as transformers' TextStreamer does, so a long answer costs linear time.
    """

    tokenizer: Any
    prompt_len: int
    stops: tuple[str, ...]
    on_text: Callable[[str], None] | None
    cancel: threading.Event
    sent: int = 0
    text: str = ""
    generated: int = 0
    stopped: bool = False
    _kept: str = ""  # text of the tokens before `_window`, final
    _window: list[int] = field(default_factory=list)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.catch_up(input_ids[0, self.prompt_len :])
        done = self.stopped or self.cancel.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def catch_up(self, new_ids: Any) -> None:
        """Observe the generated tokens this watcher has not seen yet."""
        for token in new_ids[self.generated :].tolist():
            if not self.stopped:
                self._step(int(token))

    def _step(self, token: int) -> None:
        self.generated += 1
        self._window.append(token)
        window_text = self.tokenizer.decode(self._window, skip_special_tokens=True)
        text = self._kept + window_text
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, text = True, text[:cut]
            self._emit_to(text, len(text))
        else:
            self._emit_to(text, len(text) - _held_back(text, self.stops))
            if window_text.endswith("\n"):
                self._kept, self._window = text, []
        self.text = text

    def flush(self) -> None:
        self._emit_to(self.text, len(self.text))

    def _emit_to(self, text: str, end: int) -> None:
        if end > self.sent:
            piece, self.sent = text[self.sent : end], end
            if self.on_text is not None:
                self.on_text(piece)


def generate_text(
    model: Any,
    tokenizer: Any,
    request: GenerationRequest,
    *,
    on_text: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Generation:
    """Run `request` on `model` (blocking); `on_text` gets each new piece in this thread."""
    import torch
    from transformers import StoppingCriteriaList

    cancel = cancel or threading.Event()
    text = prompt_text(tokenizer, request)
    encoded = tokenizer(text, return_tensors="pt")
    input_ids = encoded["input_ids"].to(model.device)
    prompt_len = int(input_ids.shape[1])
    if prompt_len == 0:
        raise InferenceInputError("the prompt is empty after tokenizing; send some text")
    limit = context_length(model)
    if limit is not None and prompt_len + request.max_tokens > limit:
        raise InferenceInputError(
            f"the prompt ({prompt_len} tokens) plus max_tokens ({request.max_tokens}) exceeds "
            f"the model's context of {limit} tokens"
        )
    watcher = _Watcher(tokenizer, prompt_len, request.stop, on_text, cancel)
    sampling: dict[str, Any] = {"do_sample": request.temperature > 0}
    if request.temperature > 0:
        sampling.update(temperature=request.temperature, top_p=request.top_p, top_k=0)
    if request.seed is not None:
        torch.manual_seed(request.seed)  # the worker is this device's only generating thread
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        output = model.generate(
            input_ids,
            attention_mask=encoded["attention_mask"].to(model.device),
            max_new_tokens=request.max_tokens,
            stopping_criteria=StoppingCriteriaList([watcher]),
            pad_token_id=pad,
            **sampling,
        )
    watcher.catch_up(output[0, prompt_len:])
    if not watcher.stopped:
        watcher.flush()
    new_ids = output[0, prompt_len:].tolist()
    return Generation(
        text=watcher.text,
        prompt_tokens=prompt_len,
        completion_tokens=len(new_ids),
        finish_reason=_finish_reason(watcher, new_ids, tokenizer, request, cancel),
    )


def _finish_reason(
    watcher: _Watcher,
    new_ids: list[int],
    tokenizer: Any,
    request: GenerationRequest,
    cancel: threading.Event,
) -> FinishReason:
    if watcher.stopped:
        return FinishReason.STOP
    if cancel.is_set():
        return FinishReason.CANCELLED
    if new_ids and new_ids[-1] == tokenizer.eos_token_id:
        return FinishReason.STOP
    return FinishReason.LENGTH if len(new_ids) >= request.max_tokens else FinishReason.STOP


__all__ = [
    "FinishReason",
    "Generation",
    "GenerationRequest",
    "InferenceInputError",
    "context_length",
    "fallback_chat_prompt",
    "generate_text",
    "prompt_text",
]
