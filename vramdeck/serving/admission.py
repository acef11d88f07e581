"""Admission: a request holds its task's model (``manager.use``) for its whole life.

When the manager cannot make room (everything else is busy or pinned), the request waits in a
bounded per-task queue, retrying whenever a model is released or unloaded, up to a timeout
(then `NoRoom`, a 503). A full queue refuses at once (`QueueFull`, a 429). So that a task whose
requests keep arriving cannot starve another, a new request does not take a lease while a
request of another task waits for room: the busy model drains, the waiting task gets its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from vramdeck.manager.errors import InsufficientMemoryError
from vramdeck.manager.events import (
    Event,
    LoadFailed,
    ModelCrashed,
    ModelEvicted,
    ModelLoaded,
    ModelUnloaded,
)
from vramdeck.manager.model_manager import ModelManager

#: Re-check this often even when nothing was announced (other processes free memory too).
RECHECK_S = 1.0


class QueueFull(Exception):
    """The task's queue holds `queue_size` requests already."""


class NoRoom(Exception):
    """No room could be made for the task's model before the queue timeout; says why."""


@dataclass
class TaskCounts:
    """Per task: requests holding the model, waiting for it, served, and the last latency."""

    in_flight: int = 0
    queued: int = 0
    served: int = 0
    last_latency_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "queued": self.queued,
            "served": self.served,
            "last_latency_s": self.last_latency_s,
        }


@dataclass
class Held:
    """A request's hold on its model: the model and how long the request waited for it."""

    model: Any
    queue_wait_s: float
    counts: TaskCounts = field(repr=False)


class Admission:
    """Per-task queues in front of `manager.use()`."""

    def __init__(self, manager: ModelManager, *, queue_size: int, timeout_s: float) -> None:
        self._manager = manager
        self.queue_size, self.timeout_s = queue_size, timeout_s
        self.counts: dict[str, TaskCounts] = {}
        self._blocked: Counter[str] = Counter()  # tasks with requests that found no room
        self._changed = asyncio.Event()
        self._unsubscribe = manager.events.subscribe(
            self._on_event, ModelUnloaded, ModelEvicted, ModelLoaded, LoadFailed, ModelCrashed
        )

    def close(self) -> None:
        self._unsubscribe()

    def counts_of(self, task: str) -> TaskCounts:
        return self.counts.setdefault(task, TaskCounts())

    def _on_event(self, event: Event) -> None:
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _changes(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), RECHECK_S)

    @contextlib.asynccontextmanager
    async def hold(self, task: str) -> AsyncIterator[Held]:
        """Hold `task`'s model until the block ends (loading it if needed)."""
        counts = self.counts_of(task)
        if counts.queued >= self.queue_size:
            raise QueueFull(
                f"{task}: {counts.queued} requests are waiting already (the queue's size, "
                "inference.serving.queue_size); try again later"
            )
        started = time.monotonic()
        counts.queued += 1
        why: list[str] = []
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        model = await self._enter(task, stack, why)
                except TimeoutError:
                    reason = why[-1] if why else "requests of other tasks held the memory"
                    raise NoRoom(
                        f"{task}: no room for its model within {self.timeout_s:g} s: {reason}"
                    ) from None
                finally:
                    counts.queued -= 1
                counts.in_flight += 1
                try:
                    yield Held(model, time.monotonic() - started, counts)
                finally:
                    counts.in_flight -= 1
                    counts.served += 1
        finally:
            self._notify()  # after the lease ended: waiting requests try again

    async def _enter(self, task: str, stack: contextlib.AsyncExitStack, why: list[str]) -> Any:
        blocked = False
        try:
            while True:
                if not blocked and any(n and t != task for t, n in self._blocked.items()):
                    await self._changes()  # another task waits for room: let it go first
                    continue
                try:
                    return await stack.enter_async_context(self._manager.use(task))
                except InsufficientMemoryError as exc:
                    why.append(str(exc))
                    if not blocked:
                        blocked = True
                        self._blocked[task] += 1
                    await self._changes()
        finally:
            if blocked:
                self._blocked[task] -= 1
                self._notify()


__all__ = ["Admission", "Held", "NoRoom", "QueueFull", "TaskCounts"]
