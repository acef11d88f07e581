"""Previews: what a load, a switch or a warm-up would do, before it runs; they change nothing.

A preview runs the action's own decisions, placement (`loading.best_cuda_device`) and room
(`Eviction.plan_room`), on a copy of the task table and on one reading of each device, and
plays the action's steps on that copy: so a preview is what the action does (tests compare the
two over random states). Victims say where they would go and what bringing them back costs, as
the residency tiers fill `Victim.goes_to` / `restore_s`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from .config import ModelConfig, TaskConfig
from .core import NO_DEVICE, Core
from .errors import unknown_option
from .eviction import Eviction, RoomPlan
from .loading import best_cuda_device
from .lru import LoadedModel
from .memory import HOST, DeviceReading, is_cuda
from .planning import cannot_load_reason
from .preview_copy import UNUSED_EVENT, CopiedTable, WhatIf, copy_of
from .residency import Residency
from .units import format_bytes

logger = logging.getLogger(__name__)

#: Measured seconds a (task, option) took to load last time, or None (`ThrashWatch.load_s`).
LoadSeconds = Callable[[str, str], float | None]

_WHERE = {
    Residency.OFF: "unloaded",
    Residency.HOST: "parked in RAM",
    Residency.SLEEPING: "put to sleep",
    Residency.DEVICE: "kept",
}


@dataclass(frozen=True, slots=True)
class PlannedEviction:
    """A model the action would remove: what it frees and what bringing it back would cost."""

    task: str
    option: str
    device: str
    bytes: int
    goes_to: Residency
    restore_s: float | None  # measured; None when it never was


@dataclass(frozen=True, slots=True)
class Alternative:
    """Another option of the same task, as the same state would take it."""

    option: str
    evictions: int
    fits: bool
    bytes: int


@dataclass(frozen=True, slots=True)
class Preview:
    """What an action would do; `summary` says it in one sentence."""

    fits: bool
    evictions: tuple[PlannedEviction, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    summary: str = ""
    what_fits: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class _Step:
    """One load as the action would run it: its device and bytes, and the room plan."""

    device: str
    required: int
    plan: RoomPlan | None  # None: it takes no device memory (an external API)
    refused: str = ""  # why it cannot load at all here

    @property
    def fits(self) -> bool:
        return not self.refused and (self.plan is None or self.plan.fits)


class Previews:
    """Previews for one manager. Sync and cheap; call them on the manager's loop thread."""

    def __init__(self, core: Core, load_s: LoadSeconds) -> None:
        self._core = core
        self._what_if = WhatIf(core)
        self._eviction = Eviction(cast(Core, self._what_if))
        self._load_s = load_s
        self._lock = threading.Lock()  # one copy in use at a time

    # ------------------------------------------------------------------ the three previews

    def load(self, name: str, readings: Mapping[str, DeviceReading]) -> Preview:
        task = self._core.task(name)
        option = task.get_selected_config()
        loaded = self._core.table.loaded(name)
        if loaded is not None:
            return Preview(True, summary=f"{name} is loaded already ({loaded.option})")
        if self._core.table.entry(name).flight is not None:  # a load joins it: nothing new goes
            return Preview(True, summary=f"{name} is loading already")
        with self._copy(readings) as sim:
            return sim.load_preview(task, option, f"loading {name}")

    def switch(self, name: str, option_name: str, readings: Mapping[str, DeviceReading]) -> Preview:
        task = self._core.task(name)
        if option_name not in task.options:
            raise unknown_option(option_name, name, task.options)
        option = task.options[option_name]
        if option_name == task.selected:
            return Preview(True, summary=f"{name} uses {option_name} already")
        loaded = self._core.table.loaded(name)
        with self._copy(readings) as sim:
            if loaded is None:  # a switch only selects (it succeeds); the next use loads it
                later = sim.load_preview(task, option, f"loading {option_name} then")
                words = f"switching {name} to {option_name} loads nothing now; {later.summary}"
                return replace(later, fits=True, evictions=(), summary=words)
            if loaded.leases:
                held = f"{name} is in use by {loaded.leases} caller(s): the switch would fail"
                return Preview(False, summary=held)
            sim.unload(name)
            return sim.load_preview(task, option, f"switching {name} to {option_name}")

    def warmup(self, readings: Mapping[str, DeviceReading]) -> Preview:
        """`warmup_models(force=True)`: every selected model, in config order."""
        with self._copy(readings) as sim:
            played = sim.warm_all()
        with self._copy(readings) as sim:
            picked = sim.what_fits()
        return replace(played, what_fits=picked)

    def what_fits(self, readings: Mapping[str, DeviceReading]) -> tuple[str, ...]:
        with self._copy(readings) as sim:
            return sim.what_fits()

    # ------------------------------------------------------------------ the copy

    def _copy(self, readings: Mapping[str, DeviceReading]) -> _Simulation:
        return _Simulation(self, readings)


class _Simulation:
    """One preview's copy of the residents and the readings, with the action's steps on it."""

    def __init__(self, previews: Previews, readings: Mapping[str, DeviceReading]) -> None:
        self._p = previews
        self.core = previews._core
        self.readings = dict(readings)
        self.device_names = [d for d in self.core.devices.names() if d in self.readings]
        self.table = CopiedTable(self.core.tasks)
        for real in self.core.table.residents():  # least recently used first, as in the table
            if real.task in self.core.tasks:
                self.table.add(copy_of(real, self.table))

    def __enter__(self) -> _Simulation:
        self._p._lock.acquire()
        self._p._what_if.use(self.table)
        return self

    def __exit__(self, *exc: object) -> None:
        self._p._what_if.use(self.core.table)
        self._p._lock.release()

    # ------------------------------------------------------------------ steps

    def step(self, name: str, option: ModelConfig) -> _Step:
        """Where the load would go and what room it would make, as `Loading._load` decides."""
        cannot = cannot_load_reason(option)  # a missing package, loader or API key
        if cannot:
            return _Step(NO_DEVICE, 0, None, f"{option.name} cannot load here: {cannot}")
        if not self.core.holds_device_memory(option):
            return _Step(NO_DEVICE, 0, None)
        names = self.device_names
        if option.device != "auto":
            if option.device not in names:
                return _Step(option.device, 0, None, f"device {option.device} is not present")
            device = option.device
        else:
            cuda = {d: self.readings[d] for d in names if is_cuda(d)}
            what_if = cast(Core, self._p._what_if)
            device = best_cuda_device(what_if, self._p._eviction, option, cuda) if cuda else HOST
        required = self._p._what_if.required_bytes(option, device)
        plan = self._p._eviction.plan_room(device, self.readings[device], required)
        return _Step(device, required, plan)

    def apply(self, name: str, option: ModelConfig, step: _Step) -> tuple[PlannedEviction, ...]:
        """Play a fitting step: its victims leave, the model arrives (most recently used)."""
        gone = []
        for victim in step.plan.victims if step.plan else ():
            self._free(victim.model, victim.bytes)
            restore = victim.restore_s or None  # 0 (or None from a tier): never measured
            gone.append(PlannedEviction(victim.model.task, victim.model.option, step.device,
                                        victim.bytes, victim.goes_to, restore))  # fmt: skip
        entry = self.table.entry(name)
        loader = self.core.loader(option)
        load_s = self._p._load_s(name, option.name) or 0.0
        self.table.add(LoadedModel(entry, None, option, loader, step.device, step.required,
                                   load_s, released=UNUSED_EVENT))  # fmt: skip
        self._take(step.device, step.required)
        return tuple(gone)

    def unload(self, name: str) -> None:
        loaded = self.table.loaded(name)
        if loaded is not None:
            self._free(loaded, loaded.bytes)

    def _free(self, loaded: LoadedModel, nbytes: int) -> None:
        self.table.remove(loaded)
        self._take(loaded.device, -nbytes)

    def _take(self, device: str, nbytes: int) -> None:
        r = self.readings.get(device)
        if r is not None and nbytes:  # (a plain constructor: `replace` costs 10 µs a call)
            used = max(0, r.used + nbytes)
            self.readings[device] = DeviceReading(r.device, r.name, r.total, used, r.probe)

    # ------------------------------------------------------------------ previews

    def load_preview(self, task: TaskConfig, option: ModelConfig, doing: str) -> Preview:
        step = self.step(task.task_name, option)
        alternatives = self._alternatives(task, option, step)
        if not step.fits:
            why = step.refused or (
                f"does not fit on {step.device} even after evicting every model that may go"
            )
            return Preview(False, (), alternatives, _with_alternatives(f"{doing}: {why}",
                                                                       alternatives))  # fmt: skip
        victims = self.apply(task.task_name, option, step)
        if not victims:
            where = f" on {step.device}" if step.device != NO_DEVICE else ""
            words = f"{doing} fits{where} without evicting anything"
        else:
            words = f"{doing} would evict {_and(_victim_words(v) for v in victims)}"
        return Preview(True, victims, alternatives, _with_alternatives(words, alternatives))

    def _alternatives(
        self, task: TaskConfig, chosen: ModelConfig, step: _Step
    ) -> tuple[Alternative, ...]:
        """The task's other options that fit with fewer evictions (any that fit, if it does not)."""
        mine = len(step.plan.victims) if step.fits and step.plan else 0
        found = []
        for other in task.options.values():
            if other.name == chosen.name:
                continue
            s = self.step(task.task_name, other)
            n = len(s.plan.victims) if s.plan else 0
            if s.fits and (not step.fits or n < mine):
                found.append(Alternative(other.name, n, True, s.required))
        return tuple(sorted(found, key=lambda a: (a.evictions, -a.bytes)))

    def warm_all(self) -> Preview:
        """`warmup_models`: each selected model in config order; a resident one is touched."""
        loaded_at: dict[str, float] = {}  # task → expected seconds into the warm-up it loads
        clock: float | None = 0.0  # None once a load in between was never measured
        evictions: list[PlannedEviction] = []
        pushes: list[str] = []
        refused: list[str] = []
        count = 0
        for name, task in self.core.tasks.items():
            option = task.get_selected_config()
            if option.unavailable_reason:
                continue
            count += 1
            if self.table.loaded(name) is not None:
                self.table.touch(name)
                continue
            step = self.step(name, option)
            if not step.fits:
                refused.append(f"{name} would not load ({step.refused or 'no room'})")
                continue
            for victim in self.apply(name, option, step):
                evictions.append(victim)
                since = loaded_at.get(victim.task)
                after = clock - since if clock is not None and since is not None else None
                pushes.append(_pushed(victim.task, name, after))
            took = self._p._load_s(name, option.name)
            clock = clock + took if clock is not None and took is not None else None
            if clock is not None:
                loaded_at[name] = clock
        fits = not evictions and not refused
        if fits:
            return Preview(True, summary=f"all {count} fit: warming them up evicts nothing")
        parts = [f"loading all {count} would evict {_and(pushes)}"] if pushes else []
        parts.extend(refused)
        return Preview(False, tuple(evictions), summary="; ".join(parts))

    def what_fits(self) -> tuple[str, ...]:
        """The tasks warm-up should load: by priority, then most recent use, then config order;
        each one kept only if it fits beside those picked before it (they are held meanwhile,
        as `warmup_what_fits` holds them, so none evicts another)."""
        order = {name: i for i, name in enumerate(self.core.tasks)}
        tasks, core = self.core.tasks, self.core
        ranked = sorted(order, key=lambda n: (-_priority(tasks[n]), -_last_used(core, n), order[n]))
        picked: list[str] = []
        for name in ranked:
            option = self.core.tasks[name].get_selected_config()
            if option.unavailable_reason:
                continue
            if self.table.loaded(name) is None:
                step = self.step(name, option)
                if not step.fits:
                    continue
                self.apply(name, option, step)
            held = self.table.loaded(name)
            if held is not None:
                held.leases += 1  # the copy's lease: the real model is never touched
            picked.append(name)
        return tuple(picked)


async def load_holding(
    use: Callable[[str], contextlib.AbstractAsyncContextManager[Any]], names: Sequence[str]
) -> list[str]:
    """Load `names` in order, each held (``use()``) until all are in, as `what_fits` planned:
    a later one never evicts an earlier one. Returns those that loaded; a failure is logged
    and the others still load."""
    loaded = []
    async with contextlib.AsyncExitStack() as held:
        for name in names:
            try:
                await held.enter_async_context(use(name))
            except (ValueError, RuntimeError) as exc:
                logger.warning("warming up %s failed: %s", name, exc)
                continue
            loaded.append(name)
    return loaded


def _priority(task: TaskConfig) -> float:
    return float(task.priority)


def _last_used(core: Core, name: str) -> float:
    loaded = core.table.loaded(name)
    return loaded.last_used if loaded is not None else float("-inf")


def _victim_words(v: PlannedEviction) -> str:
    back = f", back in {_seconds(v.restore_s)}" if v.restore_s is not None else ""
    return f"{v.task} ({format_bytes(v.bytes)}, {_WHERE[v.goes_to]}{back})"


def _pushed(victim: str, by: str, after_s: float | None) -> str:
    """ "gpt2 for minilm 30 ms later": the warm-up loaded the victim that long before (measured
    load times); without the figure, no time is claimed."""
    later = f" {_seconds(after_s)} later" if after_s is not None else ""
    return f"{victim} for {by}{later}"


def _with_alternatives(words: str, alternatives: tuple[Alternative, ...]) -> str:
    if not alternatives:
        return words
    best = alternatives[0]
    evicting = "no eviction" if not best.evictions else f"{best.evictions} eviction(s)"
    return f"{words}; {best.option} would fit with {evicting}"


def _seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def _and(items: Iterable[str]) -> str:
    words = list(items)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


__all__ = ["Alternative", "LoadSeconds", "PlannedEviction", "Preview", "Previews", "load_holding"]
