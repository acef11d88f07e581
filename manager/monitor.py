"""Background loops on the manager's event loop: memory sampling and housekeeping.

Hardware is read through ``asyncio.to_thread`` so a reading never queues behind a long load in a
device's worker, and events are emitted back on the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from .memory import DeviceReading

logger = logging.getLogger(__name__)


class _Loop:
    """One named coroutine run repeatedly every `interval_s` until stopped."""

    name = "loop"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self.interval_s = 1.0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, interval_s: float | None = None) -> None:
        if interval_s is not None:
            self.interval_s = interval_s
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed sample must not stop the schedule
                logger.exception("%s failed; going on", self.name)
            await asyncio.sleep(self.interval_s)

    async def tick(self) -> None:
        raise NotImplementedError


class MemoryMonitor(_Loop):
    """Reads every device (`read`, blocking: run in a thread) and hands the readings to `sample`
    on the loop's thread; 10 Hz by default."""

    name = "vramdeck-memory-monitor"

    def __init__(
        self,
        read: Callable[[], Mapping[str, DeviceReading]],
        sample: Callable[[Mapping[str, DeviceReading]], None],
    ) -> None:
        super().__init__()
        self._read, self._sample = read, sample
        self.interval_s = 0.1

    async def tick(self) -> None:
        self._sample(await asyncio.to_thread(self._read))


class Housekeeper(_Loop):
    """Notices crashed model processes and unloads idle models, twice a second."""

    name = "vramdeck-housekeeper"

    def __init__(self, check: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._check = check
        self.interval_s = 0.5

    def ensure_running(self) -> None:
        self.start()

    async def tick(self) -> None:
        await self._check()


__all__ = ["Housekeeper", "MemoryMonitor"]
