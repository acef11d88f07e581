"""Previews: what a load, a switch or a warm-up would do, before it runs; they change nothing.

A preview plays the action's steps on a light copy of the state and on one reading of each
device (`preview_copy.Copy`), decided by the action's own code: placement, the devices a server
spans, room on each. So a preview is what the action does (tests compare the two over random
states). Victims say where they would go and what bringing them back costs, as the residency
tiers fill `Victim.goes_to` / `restore_s`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .config import ModelConfig, TaskConfig
from .core import Core
from .errors import unknown_option
from .memory import DeviceReading
from .preview_copy import Copy, Step
from .preview_reads import Lookups, Reads
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


class Previews:
    """Previews for one manager. Sync and cheap; call them on the manager's loop thread."""

    def __init__(self, core: Core, load_s: LoadSeconds) -> None:
        self._core = core
        self._load_s = load_s
        self._lookups: Lookups | None = None  # shared by previews while current

    # ------------------------------------------------------------------ the three previews

    def load(self, name: str, readings: Mapping[str, DeviceReading]) -> Preview:
        task = self._core.task(name)
        option = task.get_selected_config()
        loaded = self._core.table.loaded(name)
        if loaded is not None:
            return Preview(True, summary=f"{name} is loaded already ({loaded.option})")
        if self._core.table.entry(name).flight is not None:  # a load joins it: nothing new goes
            return Preview(True, summary=f"{name} is loading already")
        return self._copy(readings).load_preview(task, option, f"loading {name}")

    def switch(self, name: str, option_name: str, readings: Mapping[str, DeviceReading]) -> Preview:
        task = self._core.task(name)
        if option_name not in task.options:
            raise unknown_option(option_name, name, task.options)
        option = task.options[option_name]
        if option_name == task.selected:
            return Preview(True, summary=f"{name} uses {option_name} already")
        loaded = self._core.table.loaded(name)
        if loaded is not None and loaded.leases:
            held = f"{name} is in use by {loaded.leases} caller(s): the switch would fail"
            return Preview(False, summary=held)
        sim = self._copy(readings)
        if loaded is None:  # a switch only selects (it succeeds); the next use loads it
            later = sim.load_preview(task, option, f"loading {option_name} then")
            words = f"switching {name} to {option_name} loads nothing now; {later.summary}"
            return replace(later, fits=True, evictions=(), summary=words)
        sim.unload(name)
        return sim.load_preview(task, option, f"switching {name} to {option_name}")

    def warmup(self, readings: Mapping[str, DeviceReading]) -> Preview:
        """`warmup_models(force=True)`: every selected model, in config order."""
        reads = self._reads()  # both plays read the state once
        played = self._copy(readings, reads).warm_all()
        return replace(played, what_fits=self._copy(readings, reads).what_fits())

    def what_fits(self, readings: Mapping[str, DeviceReading]) -> tuple[str, ...]:
        return self._copy(readings).what_fits()

    # ------------------------------------------------------------------ the copy

    def _reads(self) -> Reads:
        reads = Reads(self._core, self._lookups)
        self._lookups = reads.lookups
        return reads

    def _copy(
        self, readings: Mapping[str, DeviceReading], reads: Reads | None = None
    ) -> _Simulation:
        return _Simulation(self._core, self._load_s, readings, reads or self._reads())


class _Simulation(Copy):
    """One preview: the action's steps played on a copy of the state, told in words."""

    def __init__(
        self,
        core: Core,
        load_s: LoadSeconds,
        readings: Mapping[str, DeviceReading],
        reads: Reads | None,
    ) -> None:
        super().__init__(core, readings, reads)
        self._load_s = load_s

    def apply(self, name: str, option: ModelConfig, step: Step) -> tuple[PlannedEviction, ...]:
        """Play a fitting step (`Copy.play`, its measured load time); what it evicts, as the
        action's ModelEvicted events will say it (a server on two GPUs named by its first)."""
        victims = self.play(name, option, step, self._load_s(name, option.name) or 0.0)
        return tuple(
            PlannedEviction(v.model.task, v.model.option, v.model.device, v.bytes, v.goes_to,
                            v.restore_s or None)  # 0 (or None from a tier): never measured
            for v in victims
        )  # fmt: skip

    # ------------------------------------------------------------------ previews

    def load_preview(self, task: TaskConfig, option: ModelConfig, doing: str) -> Preview:
        step = self.step(task.task_name, option)
        if step.fits and not step.comeback:
            # As the load, before it makes room: a model folder that is gone evicts nothing.
            # (Warm-up previews do not look at fifty models' files: a load or switch does.)
            problem = self.what_if.loader(option).source_problem(option)
            if problem:
                step = Step(step.device, step.required, refused=problem)
        alternatives = self._alternatives(task, option, step)
        if not step.fits:
            why = step.refused or _no_room(step)
            return Preview(False, (), alternatives, _with_alternatives(f"{doing}: {why}",
                                                                       alternatives))  # fmt: skip
        victims = self.apply(task.task_name, option, step)
        if not victims:
            where = f" on {_and(step.shares)}" if step.shares else ""
            words = f"{doing} fits{where} without evicting anything"
        else:
            words = f"{doing} would evict {_and(_victim_words(v) for v in victims)}"
        return Preview(True, victims, alternatives, _with_alternatives(words, alternatives))

    def _alternatives(
        self, task: TaskConfig, chosen: ModelConfig, step: Step
    ) -> tuple[Alternative, ...]:
        """The task's other options that fit with fewer evictions (any that fit, if it does not)."""
        mine = step.evictions if step.fits else 0
        found = []
        for other in task.options.values():
            if other.name == chosen.name:
                continue
            s = self.step(task.task_name, other)
            if s.fits and (not step.fits or s.evictions < mine):
                found.append(Alternative(other.name, s.evictions, True, s.required))
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
            took = self._load_s(name, option.name)
            clock = clock + took if clock is not None and took is not None else None
            if clock is not None:
                loaded_at[name] = clock
        fits = not evictions and not refused
        if fits:
            return Preview(True, summary=f"all {count} fit: warming them up evicts nothing")
        # One sentence a person reads: the first few pushes and refusals, then how many more
        # (`evictions` has them all).
        parts = (
            [f"loading all {count} would evict {_and_more(pushes, 'evictions')}"] if pushes else []
        )
        if refused:
            parts.append(_and_more(refused, "tasks that would not load", sep="; "))
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
                self.play(name, option, step, self._load_s(name, option.name) or 0.0)
            self.hold(name)
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


def _no_room(step: Step) -> str:
    full = [p.device for p in step.plans if not p.fits]
    on = full[0] if len(step.plans) == 1 else f"{_and(full)} (a server on {_and(step.shares)})"
    return f"does not fit on {on} even after evicting every model that may go"


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


#: How many items a summary names before it counts the rest.
NAMED = 5


def _and_more(items: list[str], what: str, sep: str = ", ") -> str:
    """ "a, b, c, d, e and 39 more evictions": the first `NAMED` of `items`, then a count."""
    if len(items) <= NAMED + 1:
        return _and(items) if sep == ", " else sep.join(items)
    return f"{sep.join(items[:NAMED])} and {len(items) - NAMED} more {what}"


__all__ = ["Alternative", "LoadSeconds", "PlannedEviction", "Preview", "Previews", "load_holding"]
