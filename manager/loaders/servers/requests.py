"""The requests in flight on one server, which a sleep waits for and a sleeping server refuses.

The manager holds one for each ``use()`` of the server (its lease); a sleep waits until none is
held, then closes the gate in the same step (nothing can slip in between on the loop's thread).
Use it on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator


class ServerAsleepError(RuntimeError):
    """A request was made of a server that sleeps (or is falling asleep): wake it first."""


class InFlight:
    """A count of requests in flight, an event for "none", and a gate a sleep closes."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed_because: str | None = None
        #: Set while a sleep waits for requests in flight to end (for the panel and tests).
        self.sleep_waiting = asyncio.Event()

    @property
    def count(self) -> int:
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed_because is not None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """One request in flight for the block; ServerAsleepError while the gate is closed."""
        if self._closed_because is not None:
            raise ServerAsleepError(self._closed_because)
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    async def drain_and_close(self, because: str, timeout_s: float | None = None) -> float:
        """Wait until no request is in flight, then refuse new ones (`because` says why);
        returns the seconds waited. TimeoutError after `timeout_s` (the gate stays open)."""
        started = time.monotonic()
        deadline = None if timeout_s is None else started + timeout_s
        self.sleep_waiting.set()
        try:
            while self._count:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                await asyncio.wait_for(self._idle.wait(), remaining)
        finally:
            self.sleep_waiting.clear()
        self._closed_because = because  # no await since the count was 0: nothing slipped in
        return time.monotonic() - started

    def open(self) -> None:
        """Take requests again."""
        self._closed_because = None
