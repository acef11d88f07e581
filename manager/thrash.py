"""Thrash: models that keep pushing each other out, and the one-click ways out.

`ThrashWatch` follows the manager's events: a model evicted to make room (or to get back under
budget) and loaded again counts one reload, lost to the models whose loads were in flight when it
was pushed out. More
than ``inference.thrash_reloads`` reloads of one model within ``inference.thrash_window_s``
seconds (defaults 3 and 600) raise one `Thrashing` event naming the models involved and the
seconds their reloads took; the count then starts again. `thrash_fixes` offers the ways out,
from the planner: pin one, raise the budget to what they need together, or switch one to a
smaller option that lets them fit together.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .budget import device_limit
from .config import GIB, InferenceConfig
from .core import Core
from .events import Event, ModelEvicted, ModelLoaded, RemovalReason, Thrashing
from .memory import DeviceReading
from .planning import Planner
from .units import MIB, format_bytes

#: The evictions that count: those made for another model's room or budget.
PUSHED_OUT = frozenset({RemovalReason.ROOM, RemovalReason.OVER_BUDGET})


@dataclass(frozen=True, slots=True)
class _Reload:
    at: float
    seconds: float
    pushers: frozenset[str]


class ThrashWatch:
    """Counts reloads of pushed-out models from the event stream; emits `Thrashing`."""

    def __init__(
        self,
        emit: Callable[[Event], None],
        settings: Callable[[], InferenceConfig],
        loading: Callable[[], Iterable[str]],
    ) -> None:
        self._emit = emit
        self._settings = settings
        self._loading = loading  # the tasks whose load is in flight now: the pushers
        self._pushed_out: dict[str, frozenset[str]] = {}  # task → the loads that pushed it
        self._reloads: defaultdict[str, deque[_Reload]] = defaultdict(deque)
        self._load_s: dict[tuple[str, str], float] = {}

    @classmethod
    def of(cls, core: Core) -> ThrashWatch:
        """The watch of one manager: its events out, its settings in force, its flights."""

        def in_flight() -> list[str]:
            return [t for t in core.tasks if core.table.entry(t).flight is not None]

        return cls(core.emit, lambda: core.inference, in_flight)

    def load_s(self, task: str, option: str) -> float | None:
        """Seconds (task, option) took to load last time here, or None."""
        return self._load_s.get((task, option))

    def observe(self, event: Event) -> None:
        match event:
            case ModelEvicted() if event.cause in PUSHED_OUT:
                self._pushed_out[event.task] = frozenset(self._loading()) - {event.task}
            case ModelLoaded():
                self._load_s[(event.task, event.option)] = event.duration_s
                pushers = self._pushed_out.pop(event.task, None)
                if pushers is not None:
                    self._reloaded(event.task, _Reload(event.at, event.duration_s, pushers))

    def _reloaded(self, task: str, reload: _Reload) -> None:
        settings = self._settings()
        window = settings.thrash_window_s
        history = self._reloads[task]
        history.append(reload)
        while history and history[0].at < reload.at - window:
            history.popleft()
        if len(history) <= settings.thrash_reloads:
            return
        tasks = {task}.union(*(r.pushers for r in history))
        involved = [r for t in tasks for r in self._recent(t, reload.at - window)]
        for t in tasks:  # one warning per episode: the count starts again
            self._reloads.pop(t, None)
        self._emit(
            Thrashing(tasks=tuple(sorted(tasks)), reloads=len(involved), window_s=window,
                      seconds_lost=sum(r.seconds for r in involved))
        )  # fmt: skip

    def _recent(self, task: str, since: float) -> list[_Reload]:
        return [r for r in self._reloads.get(task, ()) if r.at >= since]


class FixKind(StrEnum):
    PIN = "pin"
    RAISE_BUDGET = "raise budget"
    SWITCH = "switch"


@dataclass(frozen=True, slots=True)
class Fix:
    """One way out of thrash; `summary` is what the button says."""

    kind: FixKind
    task: str
    option: str | None
    budget_bytes: int | None
    summary: str


def thrash_fixes(
    core: Core, tasks: Sequence[str], readings: Mapping[str, DeviceReading]
) -> tuple[Fix, ...]:
    """The fixes for `tasks` pushing each other out, from one reading of the devices: pin each
    one not pinned yet; raise ``memory_budget_gb`` to what they need together where the device
    has room for that; switch one to the largest smaller option with which they all fit.

    The planner places `tasks` alone: the manager's other models count as other processes'
    memory (a fix makes room for these at their expense, as a load would)."""
    names = [t for t in dict.fromkeys(tasks) if t in core.tasks]
    mine = [m for m in core.table.residents() if m.task in names]
    held = {m.device: sum(n.bytes for n in mine if n.device == m.device) for m in mine}
    together = {t: core.tasks[t] for t in names}
    planner = Planner.from_tasks(together, readings, core.inference, core.ledger.measured_bytes,
                                 held=held, holds_memory=core.holds_device_memory)  # fmt: skip
    current = {t: core.tasks[t].selected for t in names}
    inference = core.inference
    fixes = [
        Fix(FixKind.PIN, t, None, None, f"pin {t}: it is never evicted again")
        for t in names
        if not core.table.entry(t).pinned
    ]
    raised = _raised_budget(planner, current, inference)
    if raised is not None:
        both = _and(names)
        words = f"raise the memory budget to {format_bytes(raised)} so {both} fit together"
        fixes.append(Fix(FixKind.RAISE_BUDGET, names[0], None, raised, words))
    for t in names:
        size = planner.choices[t][current[t]].placed_bytes
        smaller = [
            o
            for o in planner.candidates(t, current)
            if planner.choices[t][o].placed_bytes < size and planner.fits({**current, t: o})
        ]
        if smaller:  # candidates come largest first: the first is the smallest change
            o = smaller[0]
            words = f"switch {t} to {o} ({format_bytes(planner.choices[t][o].nbytes)}): "
            fixes.append(Fix(FixKind.SWITCH, t, o, None, words + f"{_and(names)} then fit"))
    return tuple(fixes)


def _raised_budget(
    planner: Planner, current: Mapping[str, str], inference: InferenceConfig
) -> int | None:
    """The memory budget with which `current` fits, or None if a budget cannot make it fit
    (the device itself is too small once other processes count) or it fits already."""
    plans = planner.placement(current)
    if all(p.fits for p in plans.values()):
        return None
    need = 0
    for plan in plans.values():
        room = plan.room
        if plan.required > device_limit(room.total, inference) - room.others:
            return None
        need = max(need, plan.required)
    # Whole MiB: a multiple of 1 MiB is exact in GiB as a float, so the budget set is this one.
    return -(-need // MIB) * MIB


def set_memory_budget(inference: InferenceConfig, budget_bytes: int | None) -> None:
    """`inference.memory_budget_gb` from bytes (None: no cap); ValueError for a bad figure."""
    if budget_bytes is not None and (
        isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes <= 0
    ):
        raise ValueError(f"memory budget must be a positive whole number of bytes, "
                         f"got {budget_bytes!r}")  # fmt: skip
    inference.memory_budget_gb = None if budget_bytes is None else budget_bytes / GIB


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


__all__ = ["PUSHED_OUT", "Fix", "FixKind", "ThrashWatch", "set_memory_budget", "thrash_fixes"]
