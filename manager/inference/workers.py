"""The inference workers: one thread per device, owned here, so inference never runs on the loop
and requests to one device run in arrival order, one at a time (loads keep their own workers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


async def outlive_cancellation(future: asyncio.Future[Any]) -> bool:
    """Wait until `future` is done even if cancelled meanwhile; True if this was cancelled."""
    interrupted = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            interrupted = True
    if not future.cancelled():
        future.exception()  # retrieved: the caller saw it, or dropped it on purpose
    return interrupted


class InferenceWorkers:
    """A single-thread executor per device, named ``vramdeck-infer-<device>``."""

    def __init__(self) -> None:
        self._executors: dict[str, ThreadPoolExecutor] = {}

    def _executor(self, device: str) -> ThreadPoolExecutor:
        if device not in self._executors:
            name = f"vramdeck-infer-{device.replace(':', '')}"
            self._executors[device] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return self._executors[device]

    def submit(self, device: str, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue blocking `fn` on `device`'s inference worker."""
        return self._executor(device).submit(fn, *args)

    async def run(self, device: str, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking `fn` on `device`'s inference worker and await its result.

        A cancelled caller still waits for a `fn` that has started (it uses the caller's held
        model, which must not be released under it); one still queued is dropped.
        """
        queued = self.submit(device, fn, *args)
        future = asyncio.wrap_future(queued)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not queued.cancel():
                await outlive_cancellation(future)
            raise

    @property
    def devices(self) -> list[str]:
        return list(self._executors)

    async def close(self) -> None:
        """Let queued work finish (waited for off the loop), then release the threads."""
        executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            await asyncio.to_thread(executor.shutdown, True)


__all__ = ["InferenceWorkers", "outlive_cancellation"]
