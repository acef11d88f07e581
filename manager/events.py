"""Manager events: immutable values with past-tense names, and the hub that delivers them.

Every event is emitted on the event loop's thread (workers return values, they never emit), so a
subscriber may touch loop-bound state, including Qt objects when the loop is qasync's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all manager events; `at` is wall-clock seconds (time.time())."""

    at: float = field(default_factory=time.time)

    @property
    def kind(self) -> str:
        """The event's class name, e.g. ``ModelLoaded``."""
        return type(self).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLoading(Event):
    """A load started: room was made and the loader is running."""

    task: str
    option: str
    model_id: str
    device: str
    required_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadProgress(Event):
    """A loader reported progress; `fraction` is None when it cannot tell how far it is."""

    task: str
    stage: str
    fraction: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLoaded(Event):
    """A model finished loading; `measured_bytes` is what it really took on `device`."""

    task: str
    option: str
    model_id: str
    device: str
    measured_bytes: int
    estimated_bytes: int
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadFailed(Event):
    """A load failed and was rolled back; nothing of it is held any more."""

    task: str
    option: str
    model_id: str
    reason: str
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelUnloaded(Event):
    """A model was unloaded on request (`reason`: user, idle, switch, shutdown, crash)."""

    task: str
    option: str
    model_id: str
    device: str
    freed_bytes: int
    reason: str
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEvicted(Event):
    """A model was evicted to make room; `reason` says for what, e.g. which task needed room."""

    task: str
    option: str
    model_id: str
    device: str
    freed_bytes: int
    reason: str
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryNotReturned(Event):
    """After an unload the device did not show the memory free within the timeout (a leak?)."""

    task: str
    device: str
    expected_bytes: int
    returned_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCrashed(Event):
    """A loaded model's process died on its own; its accounting was freed."""

    task: str
    option: str
    model_id: str
    device: str
    exit_code: int | None
    last_output: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOutput(Event):
    """A line that a model's server process printed while starting or running."""

    task: str
    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectionChanged(Event):
    """A task's selected option changed from `old` to `new`."""

    task: str
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PinChanged(Event):
    """A task was pinned (never evicted) or unpinned."""

    task: str
    pinned: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloaded(Event):
    """The configuration was read again from `path`."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MemorySampled(Event):
    """One reading of a device: what every process holds, and what each loaded model holds.

    `budget_bytes` is what vramdeck's models may hold there: the smaller of `threshold_bytes`
    (offload_threshold × total) and `memory_budget_bytes` (memory_budget_gb, when set)."""

    device: str
    used_bytes: int
    total_bytes: int
    budget_bytes: int
    manager_bytes: int
    threshold_bytes: int = 0
    memory_budget_bytes: int | None = None
    per_task: Mapping[str, int] = field(default_factory=dict)


E = TypeVar("E", bound=Event)
Subscriber = Callable[[Event], object]


class EventHub:
    """Delivers events to subscribers in subscription order.

    A subscriber that raises is logged and does not stop delivery to the others.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, tuple[type[Event], ...]]] = []

    def subscribe(self, callback: Subscriber, *kinds: type[Event]) -> Callable[[], None]:
        """Call `callback` for every event (or only those of `kinds`); returns an unsubscriber."""
        entry = (callback, kinds or (Event,))
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Deliver `event`; call only on the event loop's thread."""
        for callback, kinds in list(self._subscribers):
            if isinstance(event, kinds):
                try:
                    callback(event)
                except Exception:
                    logger.exception("event subscriber %r failed on %s", callback, event.kind)


__all__ = [
    "ConfigReloaded",
    "Event",
    "EventHub",
    "LoadFailed",
    "LoadProgress",
    "MemoryNotReturned",
    "MemorySampled",
    "ModelCrashed",
    "ModelEvicted",
    "ModelLoaded",
    "ModelLoading",
    "ModelUnloaded",
    "PinChanged",
    "SelectionChanged",
    "ServerOutput",
]
