"""The devices as the manager uses them: readings, one worker thread, one lock and the
reservations of loads in flight, per device."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .memory import DeviceReading, MemoryProbe, SystemProbe, torch_cached_free

T = TypeVar("T")


@dataclass
class Reservation:
    """Room promised to a load in flight. Once the load starts allocating, `started_used` is the
    device's reading at that moment, so the part already allocated is not counted twice."""

    device: str
    nbytes: int
    started_used: int | None = None

    def outstanding(self, used_now: int) -> int:
        """Bytes of the reservation the device does not show as used yet."""
        if self.started_used is None:
            return self.nbytes
        return max(0, self.nbytes - max(0, used_now - self.started_used))


class DevicePool:
    """Per-device workers, locks and reservations over one memory probe."""

    def __init__(self, probe: MemoryProbe | None = None) -> None:
        self._probe = probe
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._reservations: dict[str, list[Reservation]] = defaultdict(list)

    @property
    def probe(self) -> MemoryProbe:
        """The probe; detected on first use (NVML, else torch, plus host RAM)."""
        if self._probe is None:
            self._probe = SystemProbe.detect()
        return self._probe

    @property
    def probe_started(self) -> bool:
        return self._probe is not None

    def names(self) -> list[str]:
        return self.probe.devices()

    async def names_async(self) -> list[str]:
        # The first call detects the probe (NVML start-up can take a while): off the loop.
        return self.names() if self.probe_started else await asyncio.to_thread(self.names)

    def read(self, device: str) -> DeviceReading:
        """The device as this process can use it: torch's free cached blocks count as free."""
        reading = self.probe.read(device)
        cached = torch_cached_free(device)
        return dataclasses.replace(reading, used=reading.used - cached) if cached else reading

    async def read_async(self, device: str) -> DeviceReading:
        """A reading taken off the loop, so it never waits behind the loop's other work."""
        return await asyncio.to_thread(self.read, device)

    def lock(self, device: str) -> asyncio.Lock:
        """Held while deciding what to evict on `device`, and while unloading there."""
        return self._locks[device]

    @contextlib.asynccontextmanager
    async def locks(self, devices: Iterable[str]) -> AsyncIterator[None]:
        """Every lock of `devices` (a server on several GPUs), always taken in the same order,
        so two such holders never wait on each other."""
        async with contextlib.AsyncExitStack() as stack:
            for device in sorted(set(devices)):
                await stack.enter_async_context(self.lock(device))
            yield

    def executor(self, device: str) -> ThreadPoolExecutor:
        if device not in self._executors:
            name = f"vramdeck-{device.replace(':', '')}"
            self._executors[device] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return self._executors[device]

    def submit(self, device: str, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue blocking `fn` on `device`'s worker (one thread per device)."""
        return self.executor(device).submit(fn, *args)

    async def run(self, device: str, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking `fn` in `device`'s worker and await its result."""
        return await asyncio.wrap_future(self.submit(device, fn, *args))

    def reserve(self, device: str, nbytes: int) -> Reservation:
        reservation = Reservation(device, nbytes)
        self._reservations[device].append(reservation)
        return reservation

    def release(self, reservation: Reservation) -> None:
        self._reservations[reservation.device].remove(reservation)

    def reserved(self, device: str) -> int:
        """All bytes promised to loads in flight on `device`."""
        return sum(r.nbytes for r in self._reservations[device])

    def outstanding(self, device: str, used_now: int) -> int:
        """Bytes promised to loads in flight that `used_now` does not include yet."""
        return sum(r.outstanding(used_now) for r in self._reservations[device])

    @property
    def executors(self) -> dict[str, ThreadPoolExecutor]:
        return self._executors

    async def close(self) -> None:
        """Wait for the workers to finish (off the loop) and release the probe."""
        executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            await asyncio.to_thread(executor.shutdown, True)
        if self._probe is not None:
            self._probe.close()


__all__ = ["DevicePool", "Reservation"]
