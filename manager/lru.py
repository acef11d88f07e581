"""One entry per task, in least-recently-used order: every fact the manager keeps about a task.

Pure bookkeeping, no I/O. A `TaskEntry` lives as long as its task is configured (pin, failures,
the load in flight, its progress, its model parked in RAM or asleep: `suspended`); a
`LoadedModel` lives while one load of it is resident, so
"is this still the model I decided about?" is an identity check. The seed's dicts
(`loaded_models`, `model_load_times`, `model_memory_usage`) are read views of this table.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .residency import Residency

if TYPE_CHECKING:
    from .config import ModelConfig, TaskConfig
    from .loaders.base import AsyncLoader

V = TypeVar("V")


@dataclass(eq=False)
class TaskEntry:
    """A configured task: its config (whose `pinned` is the one pin state), why its options
    failed, its load in flight and its resident model."""

    task: str
    config: TaskConfig
    loaded: LoadedModel | None = None
    flight: asyncio.Task[Any] | None = None
    progress: tuple[float | None, str] | None = None
    failures: dict[str, str] = field(default_factory=dict)  # option → why it failed
    suspended: LoadedModel | None = None  # evicted but kept: parked in host RAM, or asleep

    @property
    def residency(self) -> Residency:
        if self.loaded is not None:
            return Residency.DEVICE
        return self.suspended.residency if self.suspended is not None else Residency.OFF

    @property
    def pinned(self) -> bool:
        return self.config.pinned

    @pinned.setter
    def pinned(self, pinned: bool) -> None:
        self.config.pinned = pinned


@dataclass(eq=False)
class LoadedModel:
    """One resident load: the model, where it is, what it takes, and the option and loader it
    was loaded with (a config reload may replace the task's option objects; the model still
    unloads the way it loaded)."""

    owner: TaskEntry
    model: Any
    config: ModelConfig
    loader: AsyncLoader
    device: str
    bytes: int
    load_duration_s: float = 0.0
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    leases: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set while nobody holds it
    residency: Residency = Residency.DEVICE  # HOST or SLEEPING once suspended
    asleep_bytes: int = 0  # what a suspended model still holds on its device (a server's contexts)
    # A server on several GPUs: device → its part of `bytes` (`device` is the first of them).
    bytes_by_device: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.released.set()

    @property
    def devices(self) -> tuple[str, ...]:
        """Every device it holds memory on, `device` first."""
        return tuple(self.bytes_by_device) if len(self.bytes_by_device) > 1 else (self.device,)

    def bytes_on(self, device: str) -> int:
        """Its part of `bytes` on `device` (all of it on its one device)."""
        if len(self.bytes_by_device) > 1:
            return self.bytes_by_device.get(device, 0)
        return self.bytes if device == self.device else 0

    def measured(self, nbytes: int, by_device: Mapping[str, int] | None = None) -> None:
        """A new reading: `nbytes` in all, split as `by_device` says when it spans devices."""
        self.bytes = nbytes
        if by_device and len(self.bytes_by_device) > 1:
            self.bytes_by_device = {d: by_device.get(d, 0) for d in self.bytes_by_device}

    @property
    def task(self) -> str:
        return self.owner.task

    @property
    def option(self) -> str:
        return self.config.name

    @property
    def model_id(self) -> str:
        return self.config.model_id

    @property
    def estimated_bytes(self) -> int:
        return self.config.vram_bytes

    @property
    def holds_memory(self) -> bool:
        return self.loader.holds_device_memory

    @property
    def evictable(self) -> bool:
        return not self.owner.pinned and self.leases == 0


class TaskTable:
    """Task entries in least-recently-used order (first = least recent)."""

    def __init__(self, tasks: Mapping[str, TaskConfig]) -> None:
        self._entries: OrderedDict[str, TaskEntry] = OrderedDict()
        self.reconfigure(tasks)

    def reconfigure(self, tasks: Mapping[str, TaskConfig]) -> None:
        """Follow a (re)loaded config: new tasks get entries, every entry its new config (pins
        come from the file), and tasks that are gone and hold nothing are dropped. Failures are
        forgotten."""
        held = {n for n, e in self._entries.items() if e.loaded or e.suspended}
        for name in [n for n in self._entries if n not in tasks and n not in held]:
            del self._entries[name]
        for name, task in tasks.items():
            entry = self._entries.get(name)
            if entry is None:
                self._entries[name] = entry = TaskEntry(name, task)
                self._entries.move_to_end(name, last=False)  # never used: least recent
            entry.config = task
            entry.failures.clear()

    def entry(self, task: str) -> TaskEntry:
        return self._entries[task]

    def loaded(self, task: str) -> LoadedModel | None:
        entry = self._entries.get(task)
        return entry.loaded if entry else None

    def residents(self) -> list[LoadedModel]:
        """Loaded models, least recently used first."""
        return [e.loaded for e in self._entries.values() if e.loaded is not None]

    def suspended(self) -> list[LoadedModel]:
        """Models parked in host RAM or asleep, least recently used first."""
        return [e.suspended for e in self._entries.values() if e.suspended is not None]

    def entries(self) -> list[TaskEntry]:
        return list(self._entries.values())

    def in_flight(self) -> list[asyncio.Task[Any]]:
        return [e.flight for e in self._entries.values() if e.flight is not None]

    def add(self, loaded: LoadedModel) -> None:
        loaded.owner.loaded = loaded
        self._entries.move_to_end(loaded.task)

    def remove(self, loaded: LoadedModel) -> None:
        if loaded.owner.loaded is loaded:
            loaded.owner.loaded = None

    def touch(self, task: str) -> None:
        """Mark `task` as just used."""
        loaded = self.loaded(task)
        if loaded is not None:
            loaded.last_used = time.monotonic()
            self._entries.move_to_end(task)

    def on_device(self, device: str) -> list[LoadedModel]:
        """Loaded models holding memory on `device` (a server on several GPUs on each)."""
        return [m for m in self.residents() if device in m.devices]

    def bytes_on(self, device: str) -> int:
        return sum(m.bytes_on(device) for m in self.on_device(device))

    def lru(self) -> LoadedModel | None:
        """The least recently used model that may be evicted, preferring those holding memory
        (evicting a 0-byte external API first would free nothing)."""
        evictable = [m for m in self.residents() if m.evictable]
        return next((m for m in evictable if m.bytes > 0), evictable[0] if evictable else None)

    def victims(self, device: str, need_bytes: int) -> list[LoadedModel] | None:
        """Least-recently-used evictable models on `device` that together free `need_bytes`.

        None when even all of them would not be enough (then nothing should be evicted).
        """
        chosen: list[LoadedModel] = []
        freed = 0
        for loaded in self.on_device(device):
            if freed >= need_bytes:
                break
            if loaded.evictable and loaded.bytes_on(device) > 0:
                chosen.append(loaded)
                freed += loaded.bytes_on(device)
        return chosen if freed >= need_bytes else None


class _View(Mapping[str, V], Generic[V]):
    """A read-only mapping over the loaded entries of a table, in LRU order."""

    def __init__(self, table: TaskTable) -> None:
        self._table = table

    def _value(self, loaded: LoadedModel) -> V:
        raise NotImplementedError

    def __getitem__(self, task: str) -> V:
        loaded = self._table.loaded(task)
        if loaded is None:
            raise KeyError(task)
        return self._value(loaded)

    def __iter__(self) -> Iterator[str]:
        return iter([m.task for m in self._table.residents()])

    def __reversed__(self) -> Iterator[str]:
        return reversed([m.task for m in self._table.residents()])

    def __len__(self) -> int:
        return len(self._table.residents())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


class ModelsView(_View[Any]):
    """task → model (the seed's ``loaded_models``, least recently used first)."""

    def _value(self, loaded: LoadedModel) -> Any:
        return loaded.model


class LoadTimesView(_View[float]):
    """task → when it was loaded, time.time() (the seed's ``model_load_times``)."""

    def _value(self, loaded: LoadedModel) -> float:
        return loaded.loaded_at


class MemoryUsageView(_View[int]):
    """task → measured bytes (the seed's ``model_memory_usage``)."""

    def _value(self, loaded: LoadedModel) -> int:
        return loaded.bytes


__all__ = [
    "LoadTimesView",
    "LoadedModel",
    "MemoryUsageView",
    "ModelsView",
    "TaskEntry",
    "TaskTable",
]
