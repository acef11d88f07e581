"""One request's record: its events, span attributes and metrics, from counts and timings only."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from opentelemetry.trace import Span

from vramdeck.manager.events import EventHub

from . import telemetry as tm
from .events import RequestFinished, RequestStarted, Route


@dataclass
class RequestRecord:
    """What is known about a request so far; `finish` reports it once."""

    route: Route | None
    hub: EventHub
    span: Span
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started: float = field(default_factory=time.monotonic)
    task: str | None = None
    option: str = ""
    queue_wait_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_at: float | None = None
    generation_started: float | None = None
    status: int | None = None  # set when the outcome is not the response's (a client gone)

    def began(self, task: str, option: str, queue_wait_s: float) -> None:
        """The request holds its model: RequestStarted."""
        self.task, self.option, self.queue_wait_s = task, option, queue_wait_s
        self.generation_started = time.monotonic()
        self.span.set_attribute(tm.ATTR_TASK, task)
        self.span.set_attribute(tm.ATTR_OPTION, option)
        self.span.set_attribute(tm.ATTR_QUEUE_WAIT, queue_wait_s)
        if self.route is not None:
            self.hub.emit(
                RequestStarted(request_id=self.request_id, task=task, option=option,
                               route=self.route, queue_wait_s=queue_wait_s)
            )  # fmt: skip

    def token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def tokens(self, prompt: int, completion: int) -> None:
        self.prompt_tokens, self.completion_tokens = prompt, completion

    def finish(self, status: int, method: str, route_name: str) -> float:
        """Report the outcome (RequestFinished, span, metrics); returns the duration."""
        status = self.status or status
        duration = time.monotonic() - self.started
        self.span.set_attribute(tm.ATTR_STATUS, status)
        self.span.set_attribute(tm.ATTR_PROMPT_TOKENS, self.prompt_tokens)
        self.span.set_attribute(tm.ATTR_COMPLETION_TOKENS, self.completion_tokens)
        found = tm.instruments()
        attrs: dict[str, str | int] = {
            tm.ATTR_METHOD: method,
            tm.ATTR_ROUTE: route_name,
            tm.ATTR_STATUS: status,
        }
        found.request_duration.record(duration, attrs)
        ttft = None
        if self.task is not None:
            task_attrs = {tm.ATTR_TASK: self.task}
            found.queue_wait.record(self.queue_wait_s, task_attrs)
            if self.first_token_at is not None:
                ttft = self.first_token_at - self.started
                found.time_to_first_token.record(ttft, task_attrs)
            if self.completion_tokens and self.generation_started is not None:
                spent = time.monotonic() - self.generation_started
                if spent > 0:
                    found.tokens_per_second.record(self.completion_tokens / spent, task_attrs)
        if self.task is not None and self.route is not None:
            self.hub.emit(
                RequestFinished(request_id=self.request_id, task=self.task, option=self.option,
                                route=self.route, status=status, duration_s=duration,
                                queue_wait_s=self.queue_wait_s, prompt_tokens=self.prompt_tokens,
                                completion_tokens=self.completion_tokens,
                                time_to_first_token_s=ttft)
            )  # fmt: skip
        return duration


__all__ = ["RequestRecord"]
