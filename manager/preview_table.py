"""The task table a preview plays on: a copy of the real one's residents and suspended models.

Copies share what a play never changes in place (the model objects, their per-device parts)
and own what it does (their entry, leases, last use, where they are); the table keeps its
residents, models and bytes per device, and suspended models up to date at each change, so
the eviction code's questions at every step of a warm-up preview are lookups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from .config import TaskConfig
from .lru import LoadedModel, TaskEntry, TaskTable
from .residency import Residency

#: The copies' `released` event: nobody waits on a copy (set, as for a model nobody holds).
UNUSED_EVENT = asyncio.Event()
UNUSED_EVENT.set()


class CopiedTable(TaskTable):
    """The copy's table: a TaskTable whose entries are made when first asked for, and whose
    residents, models per device, bytes per device and suspended (parked, asleep) models are kept
    up to date at each change, not counted at every question (a warm-up preview asks them at
    every step). Residents are least recently used first, as in the real table."""

    def __init__(self, tasks: Mapping[str, TaskConfig], real: Iterable[TaskEntry] = ()) -> None:
        self._residents: list[LoadedModel] = []
        self._on: dict[str, list[LoadedModel]] = {}
        self._bytes: dict[str, int] = {}
        self._kept: list[LoadedModel] = []
        super().__init__(tasks)
        for entry in real:  # least recently used first: each new entry goes last
            if entry.task not in tasks:
                continue
            if entry.loaded is not None:
                copy = copy_of(entry.loaded, self)
                copy.owner.loaded = copy
                self._track(copy)
            if entry.suspended is not None:
                self.keep(copy_of(entry.suspended, self))

    def reconfigure(self, tasks: Mapping[str, TaskConfig]) -> None:
        self._tasks = tasks

    def entry(self, task: str) -> TaskEntry:
        entry = self._entries.get(task)
        if entry is None:
            entry = self._entries[task] = TaskEntry(task, self._tasks[task])
        return entry

    # The lists below are the table's own: callers read them at once, never keep or change them.

    def residents(self) -> list[LoadedModel]:
        return self._residents

    def on_device(self, device: str) -> list[LoadedModel]:
        return self._on.get(device, [])

    def bytes_on(self, device: str) -> int:
        return self._bytes.get(device, 0)

    def suspended(self) -> list[LoadedModel]:
        return self._kept

    def kept(self, task: str) -> LoadedModel | None:
        """The task's parked or sleeping model in the copy, if any (no entry is made)."""
        entry = self._entries.get(task)
        return entry.suspended if entry is not None else None

    def keep(
        self, model: LoadedModel, where: Residency | None = None, at: int = -1, *, asleep: int = 0
    ) -> None:
        """`model` is suspended now (sent `where`, keeping `asleep` bytes on its devices)."""
        if where is not None:
            model.residency, model.asleep_bytes = where, asleep
        model.owner.suspended = model
        self._kept.insert(len(self._kept) if at < 0 else at, model)

    def forget(self, model: LoadedModel) -> int:
        """`model` is suspended no more; returns where it was listed (for `keep`)."""
        model.owner.suspended = None
        at = self._kept.index(model)
        del self._kept[at]
        return at

    def add(self, loaded: LoadedModel) -> None:
        if loaded.owner.loaded is not None:
            self.remove(loaded.owner.loaded)
        super().add(loaded)
        self._track(loaded)

    def _track(self, loaded: LoadedModel) -> None:
        """`loaded` is a resident now, the most recently used."""
        self._residents.append(loaded)
        for device in loaded.devices:
            self._on.setdefault(device, []).append(loaded)
            self._bytes[device] = self._bytes.get(device, 0) + loaded.bytes_on(device)

    def remove(self, loaded: LoadedModel) -> None:
        if loaded.owner.loaded is not loaded:
            return
        super().remove(loaded)
        self._residents.remove(loaded)
        for device in loaded.devices:
            self._on[device].remove(loaded)
            self._bytes[device] -= loaded.bytes_on(device)

    def touch(self, task: str) -> None:
        loaded = self.loaded(task)
        super().touch(task)
        if loaded is not None:  # now the most recently used, everywhere it is listed
            for models in (self._residents, *(self._on[d] for d in loaded.devices)):
                models.remove(loaded)
                models.append(loaded)


def copy_of(real: LoadedModel, table: TaskTable) -> LoadedModel:
    """`real` in the copied table: every field the real one's (where it is, its parts on each
    device, its last use, its leases), but its own entry and an event nobody waits on. The model
    object is the real one, only read (a loader's `can_suspend` asks it), let go with the copy;
    the plays replace fields, never change a shared one in place."""
    copy = object.__new__(LoadedModel)  # a field copy: a preview makes one per resident
    copy.__dict__.update(real.__dict__)
    copy.owner, copy.released = table.entry(real.task), UNUSED_EVENT
    return copy


__all__ = ["UNUSED_EVENT", "CopiedTable", "copy_of"]
