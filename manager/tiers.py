"""Residency tiers for one manager: where an evicted model would go (parked in host RAM, asleep,
or off), what bringing it back is expected to cost, and the order eviction takes models in.

Eviction acts on these decisions (`Eviction.plan_room`) and sends models off through `suspend`;
loads bring suspended models back (`Loading`); status reports them. Expected times are measured
(the ledger's last restore from that tier); before a first measurement, a model's cold load
time stands in, an upper bound, since a failed restore falls back to a cold load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .core import Core
from .events import ModelParked, RemovalReason, ServerOutput
from .loaders.base import LoadContext, Parked, Suspension
from .loaders.servers.events import slept
from .loaders.servers.sleep import SleepReport
from .lru import LoadedModel, TaskEntry
from .memory import is_cuda
from .residency import (
    Candidate,
    HostTier,
    HostTierStatus,
    Residency,
    cheapest_first,
    eviction_reason,
)
from .residency import worth as worth_at
from .units import format_bytes

logger = logging.getLogger(__name__)

#: A freed model counts as returned once the device shows this share of its bytes free again.
RETURNED_SHARE = 0.9
#: How long a server's sleep waits for the requests in flight on it before it is stopped instead.
DRAIN_TIMEOUT_S = 30.0

#: (device, used before, bytes expected) → bytes the device shows free since (eviction's poll).
AwaitReturned = Callable[[str, int, int], Awaitable[int]]
#: Drops a task's parked model (eviction's `discard`).
Discard = Callable[[TaskEntry, RemovalReason, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Victim:
    """A model that making room would remove: what it frees, where it would go, what bringing
    it back is expected to cost (seconds, measured), and why it was chosen, in words."""

    model: LoadedModel
    bytes: int
    goes_to: Residency
    restore_s: float
    reason: str = ""

    @classmethod
    def of(cls, model: LoadedModel) -> Victim:
        """A model sent off, as eviction did before tiers (its load time to bring it back)."""
        return cls(model, model.bytes, Residency.OFF, model.load_duration_s)


class Tiers:
    """Where one manager's evicted models go, and what getting them back costs."""

    def __init__(self, core: Core, await_returned: AwaitReturned) -> None:
        self._core = core
        self._await_returned = await_returned

    def destination(self, loaded: LoadedModel, tier: HostTier | None = None) -> Residency:
        """Where evicting `loaded` would send it, given the host tier `tier` (the manager's)."""
        where = loaded.loader.suspends_to
        if where is Residency.OFF or not self.suspendable(loaded):
            return Residency.OFF
        if where is Residency.HOST:
            if not is_cuda(loaded.device):  # parking a model that is in host RAM means nothing
                return Residency.OFF
            self._core.host_cache_budget()
            tier = tier if tier is not None else self._core.host_tier
            return where if tier.admit(loaded.task, loaded.bytes).admitted else Residency.OFF
        return where

    def suspendable(self, loaded: LoadedModel) -> bool:
        """Whether its loader may suspend `loaded` rather than unload it."""
        return loaded.loader.can_suspend(loaded.model)

    def restore_estimate(self, loaded: LoadedModel, where: Residency) -> float:
        """Expected seconds to bring `loaded` back from `where`: measured, else its load time."""
        return restore_estimate(self._core, loaded, where)

    def victim(
        self, loaded: LoadedModel, tier: HostTier | None = None, where: Residency | None = None
    ) -> Victim:
        """`loaded` as a victim: where it would go, its expected restore, the words of why."""
        where = self.destination(loaded, tier) if where is None else where
        restore = self.restore_estimate(loaded, where)
        candidate = self._candidate(loaded, where, restore)
        return Victim(loaded, loaded.bytes, where, restore, eviction_reason(candidate))

    def victims(self, device: str, need_bytes: int) -> tuple[Victim, ...] | None:
        """Evictable models on `device`, cheapest loss first, that together free `need_bytes`;
        None when even all of them would not be enough (then nothing should be evicted)."""
        table = self._core.table
        evictable: list[LoadedModel] = []
        room, may_park = 0, False
        for m in table.on_device(device):
            part = m.bytes_on(device)  # a server on several GPUs: its part
            if part > 0 and m.evictable:
                evictable.append(m)
                room += part
                may_park = may_park or m.loader.suspends_to is Residency.HOST
        # Sleeping servers keep some of the device (their contexts): stopped only when the
        # evictable models alone would not make room.
        sleepers = [] if room >= need_bytes else [
            s for s in table.suspended() if s.device == device and s.asleep_bytes > 0
        ]  # fmt: skip
        if room + sum(s.asleep_bytes for s in sleepers) < need_bytes:
            return None
        stopped = tuple(self._stopped(s) for s in sleepers)
        need_bytes -= sum(v.bytes for v in stopped)
        tier = self._plan_tier() if may_park else None
        ranked = cheapest_first(self.scored(evictable, tier))
        # Who goes where, in order: each park takes room in the tier for the next.
        chosen: list[Victim] = []
        freed = 0
        for model in ranked:
            if freed >= need_bytes:
                break
            where = self.destination(model, tier)
            if where is Residency.HOST and tier is not None:
                dropped = tier.admit(model.task, model.bytes).dropped
                if {v.model.task for v in chosen} & set(dropped):
                    where = Residency.OFF  # parking it would drop one this plan just parked
                else:
                    for task in dropped:
                        tier.remove(task)
                    tier.add(model.task, model.bytes)
            chosen.append(self.victim(model, where=where))
            freed += model.bytes_on(device)
        return stopped + tuple(chosen)

    def scored(
        self, models: list[LoadedModel], tier: HostTier | None
    ) -> list[tuple[float, LoadedModel]]:
        """Each of `models` with how cheap losing it is now (`residency.worth`, higher goes
        first), sent where `destination` says given `tier`; in their order."""
        now = time.monotonic()
        return [(self.score(m, self.destination(m, tier), now), m) for m in models]

    def score(self, loaded: LoadedModel, where: Residency, now: float) -> float:
        """How cheap losing `loaded` to `where` is at `now`."""
        return worth_at(self._candidate(loaded, where, self.restore_estimate(loaded, where)), now)

    def _plan_tier(self) -> HostTier:
        """A copy of the host tier for one plan's parks to take room in (one reading of the
        host's free RAM for the whole plan)."""
        self._core.host_cache_budget()  # first, so that a default budget is in the copy
        return self._core.host_tier.copy()

    def _stopped(self, sleeper: LoadedModel) -> Victim:
        """A sleeping server stopped for room: it frees what it kept, and comes back cold."""
        restore = self.restore_estimate(sleeper, Residency.OFF)
        reason = f"asleep, stopped to free the {format_bytes(sleeper.asleep_bytes)} it kept"
        return Victim(sleeper, sleeper.asleep_bytes, Residency.OFF, restore, reason)

    def _candidate(self, loaded: LoadedModel, where: Residency, restore: float) -> Candidate:
        priority = loaded.owner.config.priority
        return Candidate(loaded.task, loaded.last_used, restore, priority, where)

    async def suspend(
        self, loaded: LoadedModel, goes_to: Residency, discard: Discard
    ) -> tuple[int, bool] | None:
        """Park or sleep `loaded` instead of unloading it; its device's lock held. Returns
        (bytes freed, True) once the device showed them free (or the loader released the model
        itself), or None when it was not kept: the caller unloads it then, as without tiers.
        `discard` drops the parked models that leave the host tier to admit it."""
        core, device = self._core, loaded.device
        if goes_to is Residency.HOST:
            admission = core.host_tier.admit(loaded.task, loaded.bytes)
            if not admission.admitted:
                return None
            for oldest in admission.dropped:  # parked models hold no device memory: no lock
                await discard(core.table.entry(oldest), RemovalReason.ROOM, loaded.task)
        ctx = LoadContext(
            task=loaded.task,
            device=device,
            probe=core.devices.probe,
            output=lambda line: core.call_on_loop(core.emit, ServerOutput(task=loaded.task,
                                                                         line=line)),
        )  # fmt: skip
        # A server on several GPUs: each of the others read before, verified after, as the first.
        others = {d: (await core.devices.read_async(d)).used for d in loaded.devices[1:]
                  if core.devices.probe.attributes_frees(d)}  # fmt: skip
        try:
            before, report = await loaded.loader.measured_suspend(
                loaded.model, ctx, core.meter(device),
                verify_timeout_s=core.inference.evict_verify_timeout_s,
                drain_timeout_s=DRAIN_TIMEOUT_S,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - any failed suspend falls back to an unload
            logger.warning("could not suspend %s (%s: %s); unloading it", loaded.task,
                           type(exc).__name__, exc)  # fmt: skip
            return None
        names: dict[str, Any] = {"task": loaded.task, "option": loaded.option,
                                 "model_id": loaded.model_id, "device": device}  # fmt: skip
        if not report.kept:  # the loader released it itself (a server stopped instead)
            if isinstance(report, SleepReport):
                core.emit(slept(report, **names))
            return loaded.bytes, True
        freed: int | None = max(0, loaded.bytes - (report.held_after or 0))
        if before is not None:
            freed = await self._verify_freed(loaded, {device: before, **others}, report)
        if freed is None:
            return None
        loaded.residency, loaded.asleep_bytes = goes_to, report.held_after or 0
        if goes_to is Residency.SLEEPING and report.held_after is not None:
            core.ledger.record_asleep(loaded.config, device, report.held_after)  # for previews
        loaded.owner.suspended = loaded
        if goes_to is Residency.HOST:
            host = report.host_bytes if isinstance(report, Parked) else loaded.bytes
            core.host_tier.add(loaded.task, host)
            core.emit(ModelParked(**names, bytes=host, duration_s=report.duration_s,
                                  host_used_bytes=core.host_tier.used_bytes))  # fmt: skip
        elif isinstance(report, SleepReport):
            core.emit(slept(report, **names))
        return max(0, freed), True

    async def _verify_freed(
        self, loaded: LoadedModel, befores: dict[str, int], report: Suspension
    ) -> int | None:
        """Bytes the devices showed free after `loaded` was suspended, each device polled for
        its part (less its share of what the suspended model still holds); None when one did
        not show its part free."""
        held_after, freed = report.held_after or 0, 0
        for where, used in befores.items():
            part = loaded.bytes_on(where)
            expected = max(0, part - held_after * part // max(1, loaded.bytes))
            returned = await self._await_returned(where, used, expected)
            if returned < RETURNED_SHARE * expected:
                logger.warning("%s on %s: the device showed %s of %s free after suspending it; "
                               "unloading it", loaded.task, where, format_bytes(returned),
                               format_bytes(expected))  # fmt: skip
                return None
            freed += max(0, returned)
        return freed

    def status(self) -> HostTierStatus:
        """The host-RAM tier now, and why it is off where it is."""
        core = self._core
        budget = core.host_cache_budget()
        reason = ""
        if budget <= 0:
            reason = "off: inference.host_cache_gb is 0"
        elif not any(is_cuda(d) for d in core.devices.names()):
            reason = "no GPU: the device is host RAM"
        return HostTierStatus(not reason, core.host_tier.used_bytes, max(0, budget), reason)


def restore_estimate(core: Core, loaded: LoadedModel, where: Residency) -> float:
    """Expected seconds to bring `loaded` back from `where`: measured, else its load time."""
    if where is Residency.DEVICE:
        return 0.0
    measured = core.ledger.restore_seconds(loaded.config, loaded.device, where.value)
    return measured if measured is not None else loaded.load_duration_s


def expected_restore(core: Core, entry: TaskEntry) -> float | None:
    """Seconds to bring the task's model back from where it is now (0 on its device; None when
    it was never loaded here)."""
    if entry.loaded is not None:
        return 0.0
    if entry.suspended is not None:
        return restore_estimate(core, entry.suspended, entry.suspended.residency)
    option = entry.config.get_selected_config()
    for kind in ("cuda", "cpu"):  # the ledger keeps figures per device kind
        measured = core.ledger.restore_seconds(option, kind, Residency.OFF.value)
        if measured is not None:
            return measured
    return None


__all__ = ["Tiers", "Victim", "expected_restore", "restore_estimate"]
