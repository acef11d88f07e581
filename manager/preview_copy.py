"""The copy a preview plays on, and the action's steps played on it (`Copy`).

`Eviction.plan_room`, `loading.best_cuda_device` and `spread.devices_for` read the state through
the Core they are given; handed a `WhatIf`, they decide on the copy exactly as they would on the
real state (the same code: a preview is what the action does), and the real state never
changes. The view copies only what a played action changes (the task table, `preview_table`;
the host tier) and reads the rest once per preview (`preview_reads.Reads`).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from . import spread
from .config import ModelConfig
from .core import NO_DEVICE, Core
from .errors import ModelLoadError
from .eviction import Eviction, RoomPlan
from .loaders.base import LoadContext
from .loaders.servers.loader import SERVER_SLEEP_LEVEL
from .loading import best_cuda_device
from .lru import LoadedModel
from .memory import HOST, DeviceReading, is_cuda
from .planning import cannot_load_reason
from .preview_reads import Reads
from .preview_table import UNUSED_EVENT, CopiedTable
from .residency import HostTier, Residency
from .tiers import Tiers, Victim


class WhatIf:
    """The manager's Core as one play of a preview sees it: `table` the copy, the host tier a
    copy the played parks take room in, the rest read once (`Reads`) or the real Core."""

    def __init__(self, core: Core, table: CopiedTable, reads: Reads) -> None:
        self.core = core
        self.table = table
        # Plain attributes: asked at every step, they skip __getattr__.
        self.inference, self.devices, self.ledger = reads.inference, reads.devices, reads.ledger
        self.required_bytes = reads.required_bytes
        self.holds_device_memory = reads.holds_device_memory
        self.loader = reads.loader

    @functools.cached_property
    def host_tier(self) -> HostTier:
        """A copy of the real tier, made when a plan first asks (most load previews never do)."""
        return self.core.host_tier.copy()

    def host_cache_budget(self) -> int:
        """The real tier's budget (read from the probe on first use), kept on the copy too."""
        self.host_tier.budget_bytes = budget = self.core.host_cache_budget()
        return budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)


class CostKeys(Tiers):
    """The tiers' choice of victims (`Tiers.victims`, unchanged: the action's own ordering)
    with what it asks of each model remembered for the preview: its cost to bring back and how
    cheap it is to lose, at one instant for the whole preview (it is one moment's answer, as
    the action's plan is). A preview's victims carry no reason in words (it shows where they
    go and what they cost); the action's do. Whether a model the preview itself loaded could
    be parked or put to sleep is asked of its loader before the model exists
    (`AsyncLoader.would_suspend`)."""

    def __init__(self, core: Core) -> None:
        super().__init__(core, _never_awaited)
        self._now = time.monotonic()  # the preview's one instant
        # Keyed by the model itself (compared by identity, never a reused id) and the tier's
        # id: an Enum hashes in Python, at each lookup.
        self._restore: dict[tuple[LoadedModel, int], float] = {}
        # ... and its score, with the last use it was counted from (a touch moves it).
        self._scores: dict[LoadedModel, tuple[float, Residency, float]] = {}
        self._destinations: dict[tuple[LoadedModel, int, int], Residency] = {}
        self._would_suspend: dict[LoadedModel, bool] = {}

    def suspendable(self, loaded: LoadedModel) -> bool:
        if loaded.model is not None:
            return super().suspendable(loaded)
        found = self._would_suspend.get(loaded)  # one this preview loaded: no object to ask
        if found is None:
            level = {SERVER_SLEEP_LEVEL: self._core.inference.server_sleep_level}
            ctx = LoadContext(loaded.task, loaded.device, self._core.devices.probe, extra=level)
            found = self._would_suspend[loaded] = loaded.loader.would_suspend(loaded.config, ctx)
        return found

    def destination(self, loaded: LoadedModel, tier: HostTier | None = None) -> Residency:
        # Where a model that may park goes depends on the tier's holdings (which the plays
        # fill) and budget: asked at each plan for each model, answered once for each.
        if loaded.loader.suspends_to is not Residency.HOST:
            return super().destination(loaded, tier)
        seen = tier if tier is not None else self._core.host_tier
        key = (loaded, seen.holdings, seen.budget_bytes)
        found = self._destinations.get(key)
        if found is None:
            found = self._destinations[key] = super().destination(loaded, tier)
        return found

    def scored(
        self, models: list[LoadedModel], tier: HostTier | None
    ) -> list[tuple[float, LoadedModel]]:
        # (Tiers' own seam.) A model is scored at nearly every plan of a warm-up preview; its
        # score changes only with its last use and where it would go (`now` is the preview's
        # one instant).
        scores, now, found = self._scores, self._now, []
        for m in models:
            where = self.destination(m, tier)
            known = scores.get(m)
            if known is None or known[0] != m.last_used or known[1] is not where:
                known = scores[m] = (m.last_used, where, self.score(m, where, now))
            found.append((known[2], m))
        return found

    def restore_estimate(self, loaded: LoadedModel, where: Residency) -> float:
        key = (loaded, id(where))
        found = self._restore.get(key)
        if found is None:
            found = self._restore[key] = super().restore_estimate(loaded, where)
        return found

    def victim(
        self, loaded: LoadedModel, tier: HostTier | None = None, where: Residency | None = None
    ) -> Victim:
        where = self.destination(loaded, tier) if where is None else where
        return Victim(loaded, loaded.bytes, where, self.restore_estimate(loaded, where))


def asleep_parts(model: LoadedModel) -> dict[str, int]:
    """What a suspended `model` keeps on each of its devices: its `asleep_bytes`, split as its
    bytes are (as `Tiers` expects each device's part back when it sleeps)."""
    if len(model.devices) == 1:
        return {model.device: model.asleep_bytes}
    whole = max(1, model.bytes)
    return {d: model.asleep_bytes * model.bytes_on(d) // whole for d in model.devices}


async def _never_awaited(device: str, before: int, expected: int) -> int:
    raise RuntimeError("a preview sends no model off: it has nothing to wait for")


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to make, and one is made
class Step:  # at every step of a warm-up preview (never changed once made)
    """One load as the action would run it: its devices and its share of each (a server on
    several GPUs: one per rank), and the room plan on each, checked all before any is made."""

    device: str  # the first of its devices; NO_DEVICE when it takes no device memory
    required: int
    shares: Mapping[str, int] = field(default_factory=dict)  # device → bytes, in load order
    plans: tuple[RoomPlan, ...] = ()
    refused: str = ""  # why it cannot load at all here
    fits: bool = False  # it loads: not refused, and room can be made on each of its devices
    comeback: bool = False  # it brings the task's parked or sleeping model back

    @property
    def evictions(self) -> int:
        """How many models making its room would send off (a server on two devices once)."""
        if len(self.plans) == 1:
            return len(self.plans[0].victims)
        return len({id(v.model) for p in self.plans for v in p.victims})


class Copy:
    """One preview's copy of the state (`WhatIf`) and of the readings, with the action's steps
    played on it by the action's own decisions: placement, devices, room."""

    def __init__(
        self, core: Core, readings: Mapping[str, DeviceReading], reads: Reads | None = None
    ) -> None:
        self.core = core
        self.readings = dict(readings)
        self.present = [d for d in core.devices.names() if d in self.readings]
        self.cuda = {d: self.readings[d] for d in self.present if is_cuda(d)}  # kept with them
        self.table = CopiedTable(core.tasks, core.table.entries())
        self.what_if = WhatIf(core, self.table, reads or Reads(core))
        self.eviction = Eviction(cast(Core, self.what_if))
        self.eviction.tiers = CostKeys(cast(Core, self.what_if))
        # Loads that found no room, by what their answer depends on (`_no_room_key`): until
        # a play changes what the devices hold or may let go, the same load finds none again.
        self._no_room: dict[tuple[int, tuple[int, ...]], Step] = {}

    # ------------------------------------------------------------------ steps

    def step(self, name: str, option: ModelConfig) -> Step:
        """Where the load would go and what room it would make, as `Loading._load` decides:
        its device (`best_cuda_device`), the devices it spans (`spread.devices_for`), and room
        on each (`Eviction.plan_room`), all or nothing (`spread.make_room_on_each`). A task
        whose model is parked or asleep is brought back on its device (`Comeback.bring_back`),
        or, for another option, dropped first."""
        kept = self.table.kept(name)
        if kept is None:
            return self._cold(name, option)
        if kept.config.load_signature() == option.load_signature():
            device, required = kept.device, max(0, kept.bytes - kept.asleep_bytes)
            if device not in self.readings:
                return Step(device, 0, refused=f"device {device} is not present")
            with self._as_if_gone(kept, freed=False):  # out of the tier before room is made
                plan = self.eviction.plan_room(device, self.readings[device], required)
            return Step(device, required, {device: required}, (plan,), fits=plan.fits,
                        comeback=True)  # fmt: skip
        with self._as_if_gone(kept, freed=True):
            return self._cold(name, option)

    def _cold(self, name: str, option: ModelConfig) -> Step:
        cannot = cannot_load_reason(option)  # a missing package, loader or API key
        if cannot:
            return Step(NO_DEVICE, 0, refused=f"{option.name} cannot load here: {cannot}")
        what_if = self.what_if
        if not what_if.holds_device_memory(option):
            return Step(NO_DEVICE, 0, fits=True)
        if option.device != "auto":
            if option.device not in self.readings:
                return Step(option.device, 0, refused=f"device {option.device} is not present")
            device = option.device
        elif self.cuda:
            key = self._no_room_key(option) if self._no_room else None  # (empty after a play)
            found = self._no_room.get(key) if key is not None else None
            if found is not None:
                return found
            device = best_cuda_device(cast(Core, what_if), self.eviction, option, self.cuda)
        else:
            device = HOST
        try:
            spans = spread.devices_for(name, option, what_if.loader(option), device, self.present)
        except ModelLoadError as exc:
            return Step(device, 0, refused=exc.reason)
        required = what_if.required_bytes(option, spans[0])
        if len(spans) == 1:  # nearly always: one device, one plan
            plan = self.eviction.plan_room(device, self.readings[device], required)
            step = Step(device, required, {device: required}, (plan,), fits=plan.fits)
            if not plan.fits and option.device == "auto" and self.cuda:
                key = self._no_room_key(option)
                if key is not None:
                    self._no_room[key] = step
            return step
        shares = spread.shares(required, spans)
        plans = tuple(self.eviction.plan_room(d, self.readings[d], n) for d, n in shares.items())
        return Step(spans[0], required, shares, plans, fits=all(p.fits for p in plans))

    def _no_room_key(self, option: ModelConfig) -> tuple[int, tuple[int, ...]] | None:
        """What an ``auto`` load's answer depends on besides the state, when that is all: its
        loader and what it takes on each GPU (`best_cuda_device` chooses by these, and room is
        made for them). None for a server: where it spans depends on the option too."""
        loader = self.what_if.loader(option)
        if spread.may_span(loader):
            return None
        return id(loader), tuple(self.what_if.required_bytes(option, d) for d in self.cuda)

    def hold(self, name: str) -> None:
        """The task's model is held (the copy's lease: the real model is never touched): it
        may not go for the loads after it."""
        held = self.table.loaded(name)
        if held is not None:
            held.leases += 1  # (fewer may go now: each "no room" answer stands)

    def play(self, name: str, option: ModelConfig, step: Step, load_s: float) -> list[Victim]:
        """Play a fitting step: its victims leave, device by device as `make_room` sends them
        (each device after the first planned again, as the action reads it again), and the
        model arrives (most recently used) holding its share of each. Returns the victims."""
        self._no_room.clear()  # what the devices hold changes
        kept = self.table.kept(name)
        if kept is not None:  # brought back, or dropped for another option
            self._let_go(kept, freed=not step.comeback)
        gone: list[Victim] = []
        for device, plan in zip(step.shares, step.plans, strict=True):
            if gone:  # the victims so far may have freed this device too (a server on both)
                plan = self.eviction.plan_room(device, self.readings[device], step.shares[device])
            for victim in plan.victims:
                self._send_off(victim)
                gone.append(victim)
        if step.comeback and kept is not None:  # the same model, back on its device
            arrived = LoadedModel(kept.owner, kept.model, kept.config, kept.loader, kept.device,
                                  kept.bytes, kept.load_duration_s,
                                  released=UNUSED_EVENT)  # fmt: skip
        else:
            arrived = LoadedModel(self.table.entry(name), None, option,
                                  self.what_if.loader(option), step.device, step.required,
                                  load_s, released=UNUSED_EVENT)  # fmt: skip
        if len(step.shares) > 1:
            arrived.bytes_by_device = dict(step.shares)
        self.table.add(arrived)
        for device, nbytes in step.shares.items():
            self._take(device, nbytes)
        return gone

    def unload(self, name: str) -> None:
        loaded = self.table.loaded(name)
        if loaded is not None:
            self._no_room.clear()
            self._free(loaded)

    def _send_off(self, victim: Victim) -> None:
        """`victim` leaves its devices; a park takes its room in the copy's host tier, as
        `Tiers.suspend` takes it in the real one, so the next plan sees it."""
        model = victim.model
        if model.owner.suspended is model:  # a sleeping server stopped: what it kept comes back
            self._let_go(model, freed=True)
            return
        self._free(model)
        if victim.goes_to is Residency.SLEEPING:
            # What it keeps asleep: as much as the last time it slept (0 before a first sleep).
            kept = self.what_if.ledger.asleep_bytes(model.config, model.device) or 0
            self.table.keep(model, Residency.SLEEPING, asleep=min(kept, model.bytes))
            for device, nbytes in asleep_parts(model).items():
                self._take(device, nbytes)
        elif victim.goes_to is Residency.HOST:
            tier = self.what_if.host_tier
            admission = tier.admit(model.task, model.bytes)
            if not admission.admitted:  # (as `Tiers.suspend`: then it is unloaded)
                return
            for task in admission.dropped:  # parked models hold no device memory
                tier.remove(task)
                dropped = self.table.kept(task)
                if dropped is not None:
                    self.table.forget(dropped)
            tier.add(model.task, model.bytes)
            self.table.keep(model, Residency.HOST)

    def _let_go(self, kept: LoadedModel, *, freed: bool) -> None:
        """The suspended `kept` leaves the copy's tier and table: brought back, or dropped
        (`freed`: then what it kept on its device is free again)."""
        self.table.forget(kept)
        self.what_if.host_tier.remove(kept.task)
        if freed:
            for device, nbytes in asleep_parts(kept).items():
                self._take(device, -nbytes)

    @contextlib.contextmanager
    def _as_if_gone(self, kept: LoadedModel, *, freed: bool) -> Iterator[None]:
        """Plan as the action does once `kept` left (`_let_go`), then put everything back."""
        tier, at = self.what_if.host_tier, -1
        readings = {d: self.readings[d] for d in kept.devices if d in self.readings}
        self.what_if.host_tier = tier.copy()
        try:
            at = self.table.forget(kept)
            self.what_if.host_tier.remove(kept.task)
            if freed:
                for device, nbytes in asleep_parts(kept).items():
                    self._take(device, -nbytes)
            yield
        finally:
            self.what_if.host_tier = tier
            self.table.keep(kept, at=at)
            for device, reading in readings.items():
                self._set(device, reading)

    def _free(self, loaded: LoadedModel) -> None:
        self.table.remove(loaded)
        for device in loaded.devices:
            self._take(device, -loaded.bytes_on(device))

    def _take(self, device: str, nbytes: int) -> None:
        r = self.readings.get(device)
        if r is not None and nbytes:  # (a plain constructor: `replace` costs 10 µs a call)
            used = max(0, r.used + nbytes)
            self._set(device, DeviceReading(r.device, r.name, r.total, used, r.probe))

    def _set(self, device: str, reading: DeviceReading) -> None:
        self.readings[device] = reading
        if device in self.cuda:
            self.cuda[device] = reading


__all__ = ["Copy", "CostKeys", "Step", "WhatIf"]
