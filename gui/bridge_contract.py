"""The bridge's commands over the manager's API beyond the seed: warm up one task, cancel a load,
pin, preview what an action would evict, the thrash fixes, the host-RAM tier.

Part of the bridge (a mixin of ManagerBridge): one small method per manager call, so the widgets
never call the manager and each call is tested through a manager that has it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from vramdeck.manager import MemorySampled, ModelManager
from vramdeck.manager.memory import HOST, read_activity
from vramdeck.manager.residency import Residency

from .bridge_records import fix_record, host_tier_info, memory_sample, preview_record
from .records import (
    GpuActivity,
    GpuProcessInfo,
    HostTierInfo,
    MemorySample,
    PlanPreview,
    ThrashFix,
)

T = TypeVar("T")

#: Busy key of "Warm up what fits".
WARMUP_FITS = "warmup_fits"


class _Bridge(Protocol):
    """What the mixin needs of ManagerBridge."""

    _manager: ModelManager
    notice: Any  # the bridge's Signal(str)
    errorRaised: Any  # the bridge's Signal(str, str)
    taskChanged: Any  # the bridge's Signal(str)

    async def _ready(self) -> None: ...

    async def _run(self, key: str, title: str, work: Callable[[], Awaitable[T]]) -> T | None: ...

    def is_busy(self, key: str) -> bool: ...

    def host_tier(self) -> HostTierInfo: ...


class ContractCommands:
    """Warm-up of one task, Cancel, pins, previews, thrash fixes and the host tier, for the
    widgets."""

    def set_pinned(self: _Bridge, task: str, pinned: bool) -> None:
        try:
            self._manager.set_pinned(task, pinned)
        except ValueError as exc:
            self.errorRaised.emit(f"Could not pin {task}", str(exc))

    async def warm_up_task(self: _Bridge, task: str) -> float | None:
        """Load `task` and run one small inference; the first inference's seconds (None when it
        has none: an external API, a model the warm-up cannot drive)."""

        async def work() -> float | None:
            await self._ready()
            warmed = await self._manager.warm_up(task)
            return warmed.first_inference_s

        return await self._run(f"load:{task}", f"Could not warm up {task}", work)

    async def cancel_load(self: _Bridge, task: str) -> bool:
        """Abandon `task`'s load in flight (its memory freed, no process left); False when none
        was in flight."""
        return bool(await self._manager.cancel_load(task))

    def preview_load(self: _Bridge, task: str) -> PlanPreview | None:
        """What loading `task` would do (None while the task is loaded or loading)."""
        return _previewed(lambda: self._manager.preview_load(task))

    def preview_switch(self: _Bridge, task: str, option: str) -> PlanPreview | None:
        return _previewed(lambda: self._manager.preview_switch(task, option))

    def preview_warmup(self: _Bridge) -> PlanPreview | None:
        return _previewed(self._manager.preview_warmup)

    async def warm_up_what_fits(self: _Bridge) -> list[str]:
        """Load the tasks the planner picks (by priority and recent use); the ones it loaded."""

        async def work() -> list[str]:
            await self._ready()
            return list(await self._manager.warmup_what_fits())

        loaded = await self._run(WARMUP_FITS, "Warm-up of what fits failed", work) or []
        for task in loaded:  # held until all were in, now released: no event says "in use" ended
            self.taskChanged.emit(task)
        return loaded

    def thrash_fixes(self: _Bridge, tasks: tuple[str, ...]) -> tuple[ThrashFix, ...]:
        return tuple(fix_record(f) for f in self._manager.thrash_fixes(tasks))

    def raise_budget(self: _Bridge, budget_bytes: int) -> None:
        """The RAISE_BUDGET fix: in memory only (the config file keeps its own until edited)."""
        self._manager.set_memory_budget(budget_bytes)
        self.notice.emit(
            f"The memory budget is {budget_bytes / 2**30:.2f} GiB until the panel closes"
        )

    def host_tier(self: _Bridge) -> HostTierInfo:
        """The host-RAM tier's use and budget and the tasks parked there, or why it is off."""
        manager = self._manager
        parked = tuple(t for t in manager.tasks if manager.residency(t) is Residency.HOST)
        return host_tier_info(manager.host_tier_status(), parked)

    def sample_record(self: _Bridge, event: MemorySampled) -> MemorySample:
        """A sample for the widgets; the host's carries the host tier, read then: the chart's
        only read of it, one a sampling tick, in bookkeeping (no device is read)."""
        tier = self.host_tier() if event.device == HOST else None
        return memory_sample(event, tier)

    async def gpu_activity(self: _Bridge, device: str) -> GpuActivity:
        """`device`'s utilisation and the processes on it that are not vramdeck's, read in a
        thread (NVML can take a moment); ``nvml=False`` where NVML does not read `device`."""
        found = await asyncio.to_thread(read_activity, self._manager.probe, device)
        if found is None:
            return GpuActivity(device, nvml=False)
        processes = tuple(GpuProcessInfo(p.pid, p.name, p.used) for p in found.processes)
        return GpuActivity(device, True, found.utilisation, processes)


def _previewed(make: Callable[[], Any]) -> PlanPreview | None:
    """A preview, or None where the manager refuses one (a task loaded already, unknown)."""
    try:
        return preview_record(make())
    except (ValueError, KeyError, RuntimeError):
        return None


__all__ = ["WARMUP_FITS", "ContractCommands"]
