"""Where a model lives when it is not serving, and which model is cheapest to send there.

- ``Residency``: on its device, parked in host RAM, asleep (a managed server that released its
  memory and kept its process), or off.
- ``HostTier``: the host-RAM tier's bookkeeping, pure: its own LRU, a byte budget, and a check of
  the host's available RAM (with headroom) before admitting, so parking never pushes the host
  into swap.
- ``eviction_order``: among evictable models, the one whose loss costs least goes first.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

GIB = 1024**3
# Parking keeps this much of the host's RAM free, and never takes more than this share of it.
HOST_HEADROOM_BYTES = 2 * GIB
DEFAULT_HOST_SHARE = 0.25
#: Bringing a model back faster than this is instant to a person: such models cost the same,
#: and the least recently used of them goes first.
INSTANT_S = 0.1
#: Another model goes before the least recently used only when it is this many times cheaper.
CLEARLY = 4.0

T = TypeVar("T")
_HOLDINGS = itertools.count()  # `HostTier.holdings`: unique across tiers and their copies


class Residency(enum.Enum):
    DEVICE = "on device"
    HOST = "in RAM"
    SLEEPING = "sleeping"
    OFF = "off"


def default_host_cache_bytes(total_ram: int) -> int:
    """The tier's budget when `inference.host_cache_gb` is unset: a quarter of the host's RAM."""
    return int(total_ram * DEFAULT_HOST_SHARE)


@dataclass(frozen=True, slots=True)
class HostTierStatus:
    """The host-RAM tier now: whether it parks models, what it holds, its budget, and why it is
    off (e.g. "no GPU: the device is host RAM"); `reason` is empty while it is on."""

    enabled: bool
    used_bytes: int
    budget_bytes: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of `HostTier.admit`: whether the model may be parked, and who leaves for it."""

    admitted: bool
    dropped: tuple[str, ...] = ()
    reason: str = ""


class HostTier:
    """Parked models by task, oldest first, within a byte budget and the host's free RAM.

    `available_ram` reads the host's available bytes now (psutil's `available` in the manager,
    a counter in tests); `budget_bytes` 0 turns the tier off.
    """

    def __init__(
        self,
        budget_bytes: int,
        available_ram: Callable[[], int],
        *,
        headroom_bytes: int = HOST_HEADROOM_BYTES,
    ) -> None:
        self.budget_bytes = budget_bytes
        self._available_ram = available_ram
        self._headroom = headroom_bytes
        self._parked: OrderedDict[str, int] = OrderedDict()
        self._used = 0  # the sum of `_parked`, kept at each change (plans ask at each model)
        #: Names what it holds: a new one at each change, kept by `copy` (the same holdings).
        self.holdings = next(_HOLDINGS)

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    @property
    def used_bytes(self) -> int:
        return self._used

    def __contains__(self, task: object) -> bool:
        return task in self._parked

    def tasks(self) -> list[str]:
        """Parked tasks, oldest first."""
        return list(self._parked)

    def bytes_of(self, task: str) -> int:
        return self._parked.get(task, 0)

    def admit(self, task: str, nbytes: int) -> Admission:
        """Whether `nbytes` more can be parked, dropping the oldest parked models if that helps.

        Nothing changes here: the caller drops `dropped` (their host copies freed) and then
        calls `add`. A model bigger than the whole budget, or than the host's RAM less the
        headroom, is not admitted and nothing is dropped for it.
        """
        if not self.enabled:
            return Admission(False, reason="the host-RAM tier is off")
        if nbytes > self.budget_bytes:
            return Admission(False, reason="larger than the host-RAM tier's budget")
        dropped: list[str] = []
        used = self._used
        for oldest, size in self._parked.items():
            if used + nbytes <= self.budget_bytes:
                break
            if oldest != task:
                dropped.append(oldest)
                used -= size
        # Dropping frees host RAM as well: count it before comparing with what is available.
        freed = self._used - used
        if nbytes > self._available_ram() + freed - self._headroom:
            return Admission(False, reason="the host's free RAM is too low to park it")
        return Admission(True, tuple(dropped))

    def copy(self) -> HostTier:
        """The same tier, to try admissions on without changing this one (plans, previews).
        The host's free RAM is read once, at the first admission that needs it."""
        base = self.used_bytes
        read: list[int] = []

        def available() -> int:  # what the twin's parks would take is not free any more
            if not read:
                read.append(self._available_ram())
            return read[0] - max(0, twin.used_bytes - base)

        twin = HostTier(self.budget_bytes, available, headroom_bytes=self._headroom)
        twin._parked, twin._used = OrderedDict(self._parked), self._used
        twin.holdings = self.holdings
        return twin

    def add(self, task: str, nbytes: int) -> None:
        self._used += nbytes - self._parked.get(task, 0)
        self._parked[task] = nbytes
        self._parked.move_to_end(task)
        self.holdings = next(_HOLDINGS)

    def remove(self, task: str) -> int:
        """Forget `task`'s parked copy; returns the bytes it held (0 when it was not parked)."""
        if task not in self._parked:
            return 0
        freed = self._parked.pop(task)
        self._used -= freed
        self.holdings = next(_HOLDINGS)
        return freed


@dataclass(frozen=True, slots=True)
class Candidate:
    """An evictable model as eviction sees it."""

    task: str
    last_used: float  # time.monotonic() of its last use
    restore_s: float  # measured seconds to bring it back from where eviction would send it
    priority: float = 1.0
    residency_after: Residency = Residency.OFF


def worth(candidate: Candidate, now: float) -> float:
    """How cheap losing `candidate` is at `now` (higher: cheaper): its idle seconds ÷ (seconds to
    bring it back × priority)."""
    idle = max(0.0, now - candidate.last_used)
    return idle / (max(candidate.restore_s, INSTANT_S) * max(candidate.priority, 1e-6))


def eviction_order(
    candidates: Iterable[Candidate], *, now: float | None = None
) -> Iterator[Candidate]:
    """Cheapest loss first: the highest idle seconds ÷ (seconds to bring back × priority).

    A model idle for long that comes back fast goes before a busy one that takes a cold load.
    The input is in least-recently-used order, and the least recently used goes first unless
    another is clearly cheaper to lose (by `CLEARLY` or more): measured times jitter (a first
    load pays the imports), and a near tie should not reorder what a person expects.
    """
    now = time.monotonic() if now is None else now
    return cheapest_first([(worth(c, now), c) for c in candidates])


def cheapest_first(scored: list[tuple[float, T]]) -> Iterator[T]:
    """`eviction_order` on items already scored by `worth`, least recently used first; the list
    is consumed.

    Lazy: each next one is chosen when asked for, so making room (which takes the first few of
    a device's models) costs a pass per victim rather than a full ordering; previews replay
    many of them.
    """
    while scored:
        first = best = scored[0][0]
        at = 0
        for i in range(1, len(scored)):  # the first of equals, the least recently used, wins
            if scored[i][0] > best:
                at, best = i, scored[i][0]
        yield scored.pop(0 if first * CLEARLY >= best else at)[1]


def eviction_reason(candidate: Candidate, *, now: float | None = None) -> str:
    """Why this model was chosen, in words: "idle 14 min, back in 0.2 s from RAM"."""
    now = time.monotonic() if now is None else now
    idle = _duration(max(0.0, now - candidate.last_used))
    back = f"{candidate.restore_s:.1f} s" if candidate.restore_s >= 0.1 else "under 0.1 s"
    where = {
        Residency.HOST: "from RAM",
        Residency.SLEEPING: "by waking its server",
        Residency.OFF: "by a reload",
        Residency.DEVICE: "",
    }[candidate.residency_after]
    return f"idle {idle}, back in {back} {where}".rstrip()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = [
    "Admission",
    "Candidate",
    "HostTier",
    "HostTierStatus",
    "Residency",
    "cheapest_first",
    "default_host_cache_bytes",
    "eviction_order",
    "eviction_reason",
    "worth",
]
