"""Eviction: choose what goes to make room, send it off, and verify the device got the memory back.

A model goes where `tiers` says: parked in host RAM or put to sleep (a server) when its loader
can suspend it and the host tier admits it, else unloaded; a suspension that fails, or after
which the device does not show the memory free, falls back to an unload.

Decisions and unloads on a device hold that device's lock, and re-check inside it that the model
is still loaded and may go (a model held through ``use()`` never goes, not even for shutdown
while a holder is inside; see `unload`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from . import telemetry as tm
from .budget import manager_limit, shortfall
from .core import Core
from .errors import InsufficientMemoryError, ModelInUseError
from .events import (
    BudgetExceeded,
    MemoryNotReturned,
    ModelCrashed,
    ModelEvicted,
    ModelUnloaded,
    RemovalReason,
)
from .loaders.base import Death
from .lru import LoadedModel, TaskEntry
from .memory import DeviceReading
from .residency import Residency
from .tiers import RETURNED_SHARE, Tiers, Victim
from .units import format_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoomPlan:
    """How room for a load would be made on one device (see `Eviction.plan_room`)."""

    device: str
    need: int  # bytes that must go first; ≤ 0 when it fits already
    victims: tuple[Victim, ...]
    fits: bool  # False: even every evictable model would not make room


def describe_failure(exc: BaseException) -> str:
    """An exception as a short reason: its type and first line (out of memory said plainly)."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "OutOfMemory" in name:
        return f"out of memory: {text}" if text else "out of memory"
    return f"{name}: {text}" if text else name


class Eviction:
    """Makes room on devices and removes models, for one manager."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._evictions = tm.instruments().evictions
        self.tiers = Tiers(core, self._await_returned)

    def shortfall(self, device: str, reading: DeviceReading, required: int) -> int:
        """Bytes that must go from `device` before `required` more fit (≤ 0: it fits now)."""
        core = self._core
        pool = core.devices
        return shortfall(reading, core.table.bytes_on(device), required, core.inference,
                         pool.outstanding(device, reading.used), pool.reserved(device))  # fmt: skip

    def plan_room(self, device: str, reading: DeviceReading, required: int) -> RoomPlan:
        """What making room for `required` bytes on `device` would evict, from `reading`.

        Changes nothing: `make_room` acts on this plan, and previews show it, so a preview is
        what the action does.
        """
        need = self.shortfall(device, reading, required)
        if need <= 0:
            return RoomPlan(device, need, (), fits=True)
        victims = self.tiers.victims(device, need)
        if victims is None:
            return RoomPlan(device, need, (), fits=False)
        return RoomPlan(device, need, victims, fits=True)

    async def make_room(self, device: str, required: int, *, for_task: str) -> DeviceReading:
        """Evict LRU models on `device` until `required` bytes fit; call with its lock held.

        Returns the reading that showed it fits. Raises InsufficientMemoryError, having evicted
        nothing, when even every candidate would not make room; or, having evicted some, when
        the device did not show an evicted model's memory free.
        """
        evicted: list[str] = []
        while True:
            reading = await self._core.devices.read_async(device)
            plan = self.plan_room(device, reading, required)
            if plan.need <= 0:
                return reading
            if not plan.fits:
                detail = self.no_room(device, reading, required, plan.need, evicted)
                raise InsufficientMemoryError(for_task, detail)
            for planned in plan.victims:
                victim = planned.model
                if victim.owner.suspended is victim:  # a sleeping server's leftover: stop it
                    await self.discard(victim.owner, RemovalReason.ROOM, for_task)
                    evicted.append(victim.task)
                    continue
                if self._core.table.loaded(victim.task) is not victim or not victim.evictable:
                    break  # held or gone meanwhile: choose again from a fresh reading
                returned = await self.remove(
                    victim, RemovalReason.ROOM, for_task, evicted=True, goes_to=planned.goes_to,
                    why=planned.reason,
                )  # fmt: skip
                evicted.append(victim.task)
                if not returned:
                    raise InsufficientMemoryError(
                        for_task,
                        f"evicted {', '.join(evicted)} from {device}, but the device did not "
                        f"show {victim.task}'s {format_bytes(victim.bytes)} free again",
                    )

    def no_room(
        self, device: str, r: DeviceReading, required: int, need: int, evicted: list[str]
    ) -> str:
        """Why `required` bytes do not fit `device` even with every evictable model gone."""
        table = self._core.table
        others = table.on_device(device)
        evictable = sum(m.bytes_on(device) for m in others if m.evictable)
        if others and not evictable:
            held = ", ".join(
                f"{m.task} ({'pinned' if m.owner.pinned else 'in use'})" for m in others
            )
            message = (
                f"needs {format_bytes(required)} on {device} ({r.name}) and nothing can be "
                f"evicted: every other model there is pinned or in use: {held}"
            )
        else:
            threshold = self._core.inference.offload_threshold
            message = (
                f"needs {format_bytes(required)} on {device} ({r.name}), must free "
                f"{format_bytes(need)} but only {format_bytes(evictable)} can be evicted; "
                f"device {format_bytes(r.used)} used of {format_bytes(r.total)} (limit "
                f"{format_bytes(threshold * r.total)} at offload_threshold {threshold:g}), "
                f"vramdeck's models hold {format_bytes(table.bytes_on(device))}"
            )
            budget = self._core.inference.memory_budget_bytes
            if budget is not None:
                message += f" of memory_budget_gb {format_bytes(budget)}"
        if evicted:
            message += f"; already evicted for it: {', '.join(evicted)}"
        return message

    async def back_under_budget(self, device: str, task: str) -> None:
        """After `task` measured more than its estimate: evict others, least recently used
        first, until vramdeck's models fit `device`'s budget again; if they cannot, say so."""
        core = self._core
        async with core.devices.lock(device):
            reading = await core.devices.read_async(device)
            budget = manager_limit(reading.total, core.inference)
            over = self.shortfall(device, reading, 0)
            if over <= 0:
                return
            victims = [m for m in core.table.on_device(device) if m.task != task]
            freed = 0
            for victim in victims:
                if freed >= over:
                    return
                still = core.table.loaded(victim.task) is victim
                if still and victim.evictable and victim.bytes_on(device) > 0:
                    planned = self.tiers.victim(victim)
                    await self.remove(victim, RemovalReason.OVER_BUDGET, task, evicted=True,
                                      goes_to=planned.goes_to, why=planned.reason)  # fmt: skip
                    freed += victim.bytes_on(device)
            if freed >= over:
                return
            held = core.table.bytes_on(device)
            reason = (
                f"{task} took more than its estimate; vramdeck's models hold "
                f"{format_bytes(held)} against a budget of {format_bytes(budget)}, and nothing "
                "else can be evicted"
            )
            logger.warning("%s is over budget: %s", device, reason)
            core.emit(BudgetExceeded(task=task, device=device, held_bytes=held,
                                     budget_bytes=budget, reason=reason))  # fmt: skip

    async def unload(
        self,
        loaded: LoadedModel,
        reason: RemovalReason,
        detail: str = "",
        *,
        evicted: bool = False,
        force: bool = False,
        tiered: bool = False,
    ) -> bool:
        """Remove `loaded` if it is still loaded (and, unless `force`, not held); device lock
        taken here; with `tiered`, to where `tiers` sends it (parked, asleep) rather than off.
        Returns whether it was removed; raises ModelInUseError for a held model that was not
        evicted."""
        async with self._core.devices.locks(loaded.devices):
            if self._core.table.loaded(loaded.task) is not loaded:
                return False
            if loaded.leases and not force:
                if evicted:
                    return False
                raise ModelInUseError(
                    f"{loaded.task} is in use by {loaded.leases} caller(s); unload it when they "
                    "are done"
                )
            planned = self.tiers.victim(loaded) if tiered else Victim.of(loaded)
            await self.remove(loaded, reason, detail, evicted=evicted, goes_to=planned.goes_to,
                              why=planned.reason if tiered else "")  # fmt: skip
            return True

    async def remove(
        self,
        loaded: LoadedModel,
        reason: RemovalReason,
        detail: str = "",
        *,
        evicted: bool,
        goes_to: Residency = Residency.OFF,
        why: str = "",
    ) -> bool:
        """Send `loaded`'s model off its device (parked or asleep when `goes_to` says so and it
        works, else unloaded), verify the memory came back, and report; lock held.

        Returns False when the device did not show the memory free again. A loader that fails
        to unload is logged and reported in the event's `error`; the entry is gone either way.
        """
        words = reason.describe(detail) + (f": {why}" if why else "")
        started = time.monotonic()
        error: str | None = None
        with tm.removal_span(loaded.task, loaded.model_id, loaded.device, loaded.bytes, words,
                             evicted=evicted) as span:  # fmt: skip
            self._core.table.remove(loaded)
            kept = None
            if goes_to is not Residency.OFF:
                kept = await self.tiers.suspend(loaded, goes_to, self.discard)
            try:
                freed, returned = kept or await self._unload_and_verify(loaded)
            except Exception as exc:
                logger.exception("unloading %s (%s) failed", loaded.task, loaded.model_id)
                error = describe_failure(exc)
                tm.mark_failed(span, f"{words}; the unload failed: {error}")
                freed, returned = 0, False
            if loaded.owner.suspended is not loaded:
                loaded.model = None  # the manager's last reference
            if evicted:
                self._evictions.add(1, {"device": loaded.device})
        kind = ModelEvicted if evicted else ModelUnloaded
        self._core.emit(
            kind(task=loaded.task, option=loaded.option, model_id=loaded.model_id,
                 device=loaded.device, freed_bytes=freed, cause=reason, reason=words,
                 error=error, duration_s=time.monotonic() - started)
        )  # fmt: skip
        return returned

    async def free_cancelled(self, loaded: LoadedModel) -> bool:
        """Free a model that landed after its load was cancelled (it was never in the table),
        verified as an unload is; its devices' locks taken here. Whether the memory came back."""
        async with self._core.devices.locks(loaded.devices):
            return (await self._unload_and_verify(loaded))[1]

    async def _unload_and_verify(self, loaded: LoadedModel) -> tuple[int, bool]:
        """Unload, then poll until each of its devices shows its memory free. Returns (bytes
        freed, whether they came back): the devices' own figures where they can attribute
        frees, else the entry's measured bytes."""
        device, model = loaded.device, loaded.model
        if not loaded.holds_memory:
            await loaded.loader.unload(model, device)
            return loaded.bytes, True
        devices = self._core.devices
        # A server on several GPUs: each of the others read before, verified after, as the first.
        befores = {d: (await devices.read_async(d)).used for d in loaded.devices[1:]
                   if devices.probe.attributes_frees(d)}  # fmt: skip
        before = await loaded.loader.measured_unload(model, device, self._core.meter(device))
        if before is None:
            return loaded.bytes, True
        freed, all_back = 0, True
        for where, used in {device: before, **befores}.items():
            expected = loaded.bytes_on(where)
            returned = await self._await_returned(where, used, expected)
            freed += max(0, returned)
            if returned < RETURNED_SHARE * expected:
                logger.warning(
                    "suspected leak: %s on %s freed %s of %s",
                    loaded.task, where, format_bytes(returned), format_bytes(expected),
                )  # fmt: skip
                self._core.emit(
                    MemoryNotReturned(task=loaded.task, device=where, expected_bytes=expected,
                                      returned_bytes=max(0, returned))
                )  # fmt: skip
                all_back = False
        return freed, all_back

    async def _await_returned(self, device: str, before: int, expected: int) -> int:
        """Bytes `device` shows free since `before`, polled until they reach the expected
        share or the timeout passes (a driver can take tens of ms to show a free)."""
        deadline = time.monotonic() + self._core.inference.evict_verify_timeout_s
        pause = 0.005
        while True:
            returned = before - (await self._core.devices.read_async(device)).used
            if returned >= RETURNED_SHARE * expected or time.monotonic() >= deadline:
                return returned
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def drop(self, entry: TaskEntry, reason: RemovalReason, detail: str = "") -> None:
        """Drop the task's parked or sleeping model, under its device's lock."""
        suspended = entry.suspended
        if suspended is not None:
            async with self._core.devices.lock(suspended.device):
                await self.discard(entry, reason, detail)

    async def discard(self, entry: TaskEntry, reason: RemovalReason, detail: str = "") -> None:
        """Drop the task's parked or sleeping model: its host copy freed, its server stopped."""
        suspended = entry.suspended
        if suspended is None:
            return
        entry.suspended = None
        self._core.host_tier.remove(entry.task)
        started = time.monotonic()
        error: str | None = None
        try:
            await suspended.loader.unload(suspended.model, suspended.device)
        except Exception as exc:
            logger.exception("dropping %s's suspended model failed", entry.task)
            error = describe_failure(exc)
        suspended.model = None
        self._core.emit(
            ModelUnloaded(task=entry.task, option=suspended.option,
                          model_id=suspended.model_id, device=suspended.device,
                          freed_bytes=suspended.asleep_bytes, cause=reason,
                          reason=f"{reason.describe(detail)} (it was {suspended.residency.value})",
                          error=error, duration_s=time.monotonic() - started)
        )  # fmt: skip

    async def crashed_suspended(self, entry: TaskEntry, died: Death) -> None:
        """The task's sleeping server died: forget it, clean up, report as for an awake one."""
        kept = entry.suspended
        if kept is None:
            return
        entry.suspended = None
        self._core.host_tier.remove(entry.task)
        try:
            await kept.loader.unload(kept.model, kept.device)
        except Exception:  # any loader: logged, the model is let go anyway
            logger.exception("cleaning up after %s crashed asleep failed", entry.task)
        kept.model = None
        code, lines = died
        entry.failures[kept.option] = f"crashed with exit code {code} while asleep"
        self._core.emit(
            ModelCrashed(task=entry.task, option=kept.option, model_id=kept.model_id,
                         device=kept.device, exit_code=code, last_output=tuple(lines))
        )  # fmt: skip

    async def crashed(self, loaded: LoadedModel, died: Death) -> None:
        """`loaded`'s process died on its own: free its accounting, clean up, report."""
        core = self._core
        async with core.devices.locks(loaded.devices):
            if core.table.loaded(loaded.task) is not loaded:
                return
            core.table.remove(loaded)
            try:
                await loaded.loader.unload(loaded.model, loaded.device)
            except Exception:  # any loader: logged, the model is let go anyway
                logger.exception("cleaning up after %s crashed failed", loaded.task)
            loaded.model = None
        code, lines = died
        loaded.owner.failures[loaded.option] = f"crashed with exit code {code}"
        core.emit(
            ModelCrashed(task=loaded.task, option=loaded.option, model_id=loaded.model_id,
                         device=loaded.device, exit_code=code, last_output=tuple(lines))
        )  # fmt: skip


__all__ = ["RETURNED_SHARE", "Eviction", "RoomPlan", "Victim", "describe_failure"]
