"""The endpoint's events, delivered through the manager's hub beside its own (on the loop).

They carry counts and timings only: never a prompt, an output or a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vramdeck.manager.events import Event


class Route(StrEnum):
    """The endpoint's routes that reach a model."""

    CHAT = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    EMBEDDINGS = "/v1/embeddings"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestStarted(Event):
    """A request for `task` got its model (after `queue_wait_s` waiting for it)."""

    request_id: str
    task: str
    option: str
    route: Route
    queue_wait_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFinished(Event):
    """A request for `task` ended with HTTP `status` (499: the client went away mid-answer).

    `time_to_first_token_s` (from arrival to the first streamed piece) is None for answers
    that were not streamed tokens."""

    request_id: str
    task: str
    option: str
    route: Route
    status: int
    duration_s: float
    queue_wait_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float | None = None


__all__ = ["RequestFinished", "RequestStarted", "Route"]
