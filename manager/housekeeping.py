"""What the manager does on a schedule: notice crashed model processes, re-read live footprints,
unload idle models, and turn device readings into `MemorySampled` events.

`MemoryMonitor` and `Housekeeper` (monitor.py) call these as plain callables.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping

from opentelemetry import metrics

from .budget import device_limit, manager_limit
from .core import Core
from .errors import ModelInUseError
from .events import MemorySampled, RemovalReason
from .eviction import Eviction
from .memory import DeviceReading
from .spread import by_device


class Housekeeping:
    """Health checks and samples for one manager."""

    def __init__(self, core: Core, eviction: Eviction) -> None:
        self._core, self._eviction = core, eviction

    async def check_health(self) -> None:
        """Notice models whose process died, refresh live footprints, unload idle models."""
        table = self._core.table
        for loaded in table.residents():
            if table.loaded(loaded.task) is not loaded:
                continue
            died = loaded.loader.check(loaded.model)
            if died is not None:
                await self._eviction.crashed(loaded, died)
            elif loaded.loader.live_footprint:
                own = await asyncio.to_thread(loaded.loader.footprint, loaded.model, loaded.device)
                if own is not None and table.loaded(loaded.task) is loaded:
                    loaded.measured(own, by_device(loaded.model, own))
        for entry in table.entries():  # a server that dies asleep is noticed as well
            kept = entry.suspended
            if kept is not None and (died := kept.loader.check(kept.model)) is not None:
                await self._eviction.crashed_suspended(entry, died)
        idle_s = self._core.inference.idle_unload_s
        if idle_s is None:
            return
        for loaded in table.residents():
            if loaded.evictable and time.monotonic() - loaded.last_used >= idle_s:
                with contextlib.suppress(ModelInUseError):
                    await self._eviction.unload(loaded, RemovalReason.IDLE, f"{idle_s:g} s")
        # A parked or sleeping model idle as long is let go too: its host RAM, its server's
        # process. (Parking keeps what was evicted to make room, not what nobody uses.)
        for entry in table.entries():
            kept = entry.suspended
            if kept is not None and time.monotonic() - kept.last_used >= idle_s:
                await self._eviction.drop(entry, RemovalReason.IDLE, f"{idle_s:g} s")

    def sample(self, readings: Mapping[str, DeviceReading]) -> None:
        """Emit one MemorySampled per device from `readings`."""
        inference = self._core.inference
        for device, r in readings.items():
            per_task = {m.task: m.bytes_on(device) for m in self._core.table.on_device(device)}
            self._core.emit(
                MemorySampled(device=device, used_bytes=r.used, total_bytes=r.total,
                              budget_bytes=manager_limit(r.total, inference),
                              threshold_bytes=device_limit(r.total, inference),
                              memory_budget_bytes=inference.memory_budget_bytes,
                              manager_bytes=sum(per_task.values()), per_task=per_task)
            )  # fmt: skip

    def memory_observations(self) -> Iterable[metrics.Observation]:
        """The last samples as gauge observations (the SDK's reader thread calls this: it reads
        the last samples only, never the hardware)."""
        for device, s in list(self._core.last_samples.items()):
            yield metrics.Observation(s.used_bytes, {"device": device, "holder": "all"})
            yield metrics.Observation(s.manager_bytes, {"device": device, "holder": "vramdeck"})


__all__ = ["Housekeeping"]
