"""The bases of the manager's events (`Event`, `TaskEvent`, `ModelEvent`), why a model was
removed (`RemovalReason`), and the hub that delivers events to subscribers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar, overload

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


E = TypeVar("E", bound=Event)
Subscriber = Callable[[Event], object]


class EventHub:
    """Delivers events to subscribers in subscription order.

    A subscriber that raises is logged and does not stop delivery to the others.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, tuple[type[Event], ...]]] = []

    @overload
    def subscribe(self, callback: Subscriber) -> Callable[[], None]: ...

    @overload
    def subscribe(
        self, callback: Callable[[E], object], kind: type[E], /, *kinds: type[E]
    ) -> Callable[[], None]: ...

    # The callback's parameter type is checked by the overloads: it is called only with `kinds`.
    def subscribe(self, callback: Callable[..., object], *kinds: type[Event]) -> Callable[[], None]:
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
                except Exception:  # a subscriber's bug must not stop delivery
                    logger.exception("event subscriber %r failed on %s", callback, event.kind)


__all__ = ["Event", "EventHub", "ModelEvent", "RemovalReason", "TaskEvent"]
