"""Manager events: immutable values with past-tense names, and the hub that delivers them.

Every event is emitted on the event loop's thread (workers return values, they never emit), so a
subscriber may touch loop-bound state, including Qt objects when the loop is qasync's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
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

    @property
    def size_bytes(self) -> int | None:
        """The bytes the event is about (loaded, freed, required…), where it has some."""
        return None


class RemovalReason(StrEnum):
    """Why a model was unloaded or evicted; `describe` gives the words a person reads."""

    USER = "user"
    EVICT = "evict"
    ROOM = "room"
    OVER_BUDGET = "over budget"
    IDLE = "idle"
    SWITCH = "switch"
    CONFIG_RELOADED = "config reloaded"
    SHUTDOWN = "shutdown"

    def describe(self, detail: str = "") -> str:
        """The reason in words, with `detail` (a task, a duration, an option) where it has one."""
        words = {
            RemovalReason.USER: "user",
            RemovalReason.EVICT: "you asked to evict the least recently used model",
            RemovalReason.ROOM: f"room for {detail}",
            RemovalReason.OVER_BUDGET: f"over budget after {detail} took more than estimated",
            RemovalReason.IDLE: f"idle for {detail}",
            RemovalReason.SWITCH: f"switching to {detail}",
            RemovalReason.CONFIG_RELOADED: "the config changed",
            RemovalReason.SHUTDOWN: "shutdown",
        }
        return words[self]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent(Event):
    """An event about one task."""

    task: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEvent(TaskEvent):
    """An event about one option of a task, on a device (``none`` for external APIs)."""

    option: str
    model_id: str
    device: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLoading(ModelEvent):
    """A load started: room was made and the loader is running."""

    required_bytes: int

    @property
    def size_bytes(self) -> int | None:
        return self.required_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadProgress(TaskEvent):
    """A loader reported progress; `fraction` is None when it cannot tell how far it is."""

    stage: str
    fraction: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLoaded(ModelEvent):
    """A model finished loading; `measured_bytes` is what it really took on `device`."""

    measured_bytes: int
    estimated_bytes: int
    duration_s: float

    @property
    def size_bytes(self) -> int | None:
        return self.measured_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadFailed(ModelEvent):
    """A load failed and was rolled back; nothing of it is held any more."""

    reason: str
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRemoved(ModelEvent):
    """A model left its device (`ModelUnloaded` or `ModelEvicted`). `cause` says why, `reason`
    in words ("room for embeddings"), `error` how the unload failed (its accounting is freed
    either way)."""

    freed_bytes: int
    cause: RemovalReason
    reason: str
    duration_s: float
    error: str | None = None

    @property
    def size_bytes(self) -> int | None:
        return self.freed_bytes

    @property
    def description(self) -> str:
        """Why, in words, and what went wrong if the unload failed."""
        return f"{self.reason}; the unload failed: {self.error}" if self.error else self.reason


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelUnloaded(ModelRemoved):
    """A model was unloaded on request, when idle, for a switch, a config reload or shutdown."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEvicted(ModelRemoved):
    """A model was evicted: for room (`detail` names the task that needed it), by request, or to
    bring a device back under its budget."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryNotReturned(TaskEvent):
    """After an unload the device did not show the memory free within the timeout (a leak?)."""

    device: str
    expected_bytes: int
    returned_bytes: int

    @property
    def size_bytes(self) -> int | None:
        return self.expected_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExceeded(TaskEvent):
    """After `task` loaded and measured more than its estimate, vramdeck's models hold more than
    `device`'s budget and nothing more could be evicted; `reason` says what holds it."""

    device: str
    held_bytes: int
    budget_bytes: int
    reason: str

    @property
    def size_bytes(self) -> int | None:
        return self.held_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCrashed(ModelEvent):
    """A loaded model's process died on its own; its accounting was freed."""

    exit_code: int | None
    last_output: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOutput(TaskEvent):
    """A line that a model's server process printed while starting or running."""

    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectionChanged(TaskEvent):
    """A task's selected option changed from `old` to `new`."""

    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchFailed(TaskEvent):
    """Switching a task to option `new` failed; `old` is selected (and loaded) again."""

    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PinChanged(TaskEvent):
    """A task was pinned (never evicted) or unpinned."""

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Thrashing(Event):
    """Models that keep pushing each other out: one was evicted and reloaded more than
    ``inference.thrash_reloads`` times within ``thrash_window_s``; `seconds_lost` is what those
    reloads took (see `ModelManager.thrash_fixes` for the ways out)."""

    tasks: tuple[str, ...]
    reloads: int
    window_s: float
    seconds_lost: float


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
    "BudgetExceeded",
    "ConfigReloaded",
    "Event",
    "EventHub",
    "LoadFailed",
    "LoadProgress",
    "MemoryNotReturned",
    "MemorySampled",
    "ModelCrashed",
    "ModelEvent",
    "ModelEvicted",
    "ModelLoaded",
    "ModelLoading",
    "ModelRemoved",
    "ModelUnloaded",
    "PinChanged",
    "RemovalReason",
    "SelectionChanged",
    "ServerOutput",
    "SwitchFailed",
    "TaskEvent",
    "Thrashing",
]
