"""The copy a preview plays on: the manager's Core seen through a copied task table.

`Eviction.plan_room` and `loading.best_cuda_device` read the table through the Core they are
given; handed a `WhatIf` whose table is a `CopiedTable`, they decide on the copy exactly as they
would on the real one, and the real one never changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .config import ModelConfig, TaskConfig
from .core import Core
from .lru import LoadedModel, TaskEntry, TaskTable

#: The copies' `released` event: nobody waits on a copy (set, as for a model nobody holds).
UNUSED_EVENT = asyncio.Event()
UNUSED_EVENT.set()


class WhatIf:
    """The manager's Core seen through a copied task table (everything else is the real one).
    What an option takes is asked at every step of a warm-up: remembered for one preview."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.table = core.table
        self._required: dict[tuple[int, str], int] = {}

    def use(self, table: TaskTable) -> None:
        self.table = table
        self._required.clear()
        # Asked at every step: plain attributes (read now, the config in force) skip __getattr__.
        self.inference, self.devices = self.core.inference, self.core.devices

    def required_bytes(self, option: ModelConfig, device: str) -> int:
        key = (id(option), device)
        if key not in self._required:
            self._required[key] = self.core.required_bytes(option, device)
        return self._required[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)


class CopiedTable(TaskTable):
    """The copy's table: a TaskTable whose entries are made when first asked for, and whose
    residents and bytes per device are counted once per change, not at every question (a
    warm-up preview asks them at every step). Only residents have an order that matters."""

    def __init__(self, tasks: Mapping[str, TaskConfig]) -> None:
        self._residents: list[LoadedModel] | None = None
        self._bytes: dict[str, int] = {}
        super().__init__(tasks)

    def reconfigure(self, tasks: Mapping[str, TaskConfig]) -> None:
        self._tasks = tasks

    def entry(self, task: str) -> TaskEntry:
        entry = self._entries.get(task)
        if entry is None:
            entry = self._entries[task] = TaskEntry(task, self._tasks[task])
        return entry

    def _changed(self) -> None:
        self._residents = None

    def residents(self) -> list[LoadedModel]:
        """Shared between changes: callers read it, never change it."""
        if self._residents is None:
            self._residents = super().residents()
            self._bytes = {}
            for m in self._residents:
                self._bytes[m.device] = self._bytes.get(m.device, 0) + m.bytes
        return self._residents

    def bytes_on(self, device: str) -> int:
        self.residents()
        return self._bytes.get(device, 0)

    def add(self, loaded: LoadedModel) -> None:
        super().add(loaded)
        self._changed()

    def remove(self, loaded: LoadedModel) -> None:
        super().remove(loaded)
        self._changed()

    def touch(self, task: str) -> None:
        super().touch(task)
        self._changed()


def copy_of(real: LoadedModel, table: TaskTable) -> LoadedModel:
    """`real` in the copied table; its leases counted, its own event untouched."""
    copy = LoadedModel(table.entry(real.task), None, real.config, real.loader, real.device,
                       real.bytes, real.load_duration_s, real.loaded_at, real.last_used,
                       real.leases, UNUSED_EVENT)  # fmt: skip
    return copy


__all__ = ["UNUSED_EVENT", "CopiedTable", "WhatIf", "copy_of"]
