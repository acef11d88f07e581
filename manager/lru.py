"""Pure bookkeeping of loaded models: task → entry, in least-recently-used order, by bytes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Entry:
    """One loaded model, what it holds, and the option and loader it was loaded with (a config
    reload may replace the task's option objects; the model still unloads the way it loaded)."""

    task: str
    option: str
    model_id: str
    device: str
    bytes: int
    estimated_bytes: int
    config: Any = None
    loader: Any = None
    last_used: float = field(default_factory=time.monotonic)
    pinned: bool = False
    leases: int = 0

    @property
    def evictable(self) -> bool:
        return not self.pinned and self.leases == 0


class LruTable:
    """Entries in least-recently-used order (first = least recent)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __contains__(self, task: object) -> bool:
        return task in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, task: str) -> Entry | None:
        return self._entries.get(task)

    def add(self, entry: Entry) -> None:
        self._entries[entry.task] = entry
        self._entries.move_to_end(entry.task)

    def remove(self, task: str) -> Entry | None:
        return self._entries.pop(task, None)

    def touch(self, task: str) -> None:
        """Mark `task` as just used."""
        entry = self._entries[task]
        entry.last_used = time.monotonic()
        self._entries.move_to_end(task)

    def on_device(self, device: str) -> list[Entry]:
        return [e for e in self._entries.values() if e.device == device]

    def bytes_on(self, device: str) -> int:
        return sum(e.bytes for e in self.on_device(device))

    def lru(self) -> Entry | None:
        """The least recently used entry that may be evicted, on any device."""
        return next((e for e in self._entries.values() if e.evictable), None)

    def victims(self, device: str, need_bytes: int) -> list[Entry] | None:
        """Least-recently-used evictable entries on `device` that together free `need_bytes`.

        None when even all of them would not be enough (then nothing should be evicted).
        """
        chosen: list[Entry] = []
        freed = 0
        for entry in self.on_device(device):
            if freed >= need_bytes:
                break
            if entry.evictable and entry.bytes > 0:
                chosen.append(entry)
                freed += entry.bytes
        return chosen if freed >= need_bytes else None


__all__ = ["Entry", "LruTable"]
