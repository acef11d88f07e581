"""What the memory chart draws from: per device, ring buffers of samples; the host-RAM tier's
ring (what parked models hold there, and its budget); and event markers.

Samples arrive ~10 times a second per device and are only stored here; the chart reads on its
own timer (sample on a schedule, draw on a timer). Qt-free, so it is tested on its own.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .formatting import fmt_bytes, fmt_clock, fmt_duration, short_model_id
from .records import HostTierInfo, LogEntry, MemorySample
from .ring_buffer import RingBuffer

#: Columns of a device's ring: time, bytes used by every process, by the manager's models; then
#: one column per task (what its model holds).
TIME, USED, MANAGER, FIRST_TASK = 0, 1, 2, 3
#: The host tier's ring has the same layout: time, bytes parked, its budget, then per task.
PARKED, TIER_BUDGET = USED, MANAGER

#: Log kinds that leave a marker on the chart, and the marker's kind.
MARKER_KINDS = {
    "ModelLoaded": "load",
    "ModelEvicted": "evict",
    "ModelUnloaded": "unload",
    "LoadFailed": "fail",
    "ModelCrashed": "fail",
    "ModelParked": "park",
    "ModelRestored": "restore",
    "ModelSlept": "sleep",
    "ModelWoken": "wake",
}


@dataclass(frozen=True, slots=True)
class Marker:
    """A load, eviction, unload or failure at one moment, drawn at the models' total then."""

    at: float
    device: str
    kind: str  # load | evict | unload | fail | park | restore | sleep | wake
    bytes_then: int
    text: str
    task: str = ""


class DeviceHistory:
    """The samples of one device, newest last, and its latest totals and budget lines."""

    def __init__(self, device: str, capacity: int) -> None:
        self.device = device
        self.ring = RingBuffer(capacity, FIRST_TASK + 4)
        self.task_columns: dict[str, int] = {}
        self.latest: MemorySample | None = None

    def add(self, sample: MemorySample) -> None:
        self._append(sample.at, sample.used, sample.manager, sample.per_task)
        self.latest = sample

    def _append(self, at: float, used: int, manager: int, per_task: Mapping[str, int]) -> None:
        for task in per_task:
            if task not in self.task_columns:
                self.task_columns[task] = FIRST_TASK + len(self.task_columns)
        self.ring.widen(FIRST_TASK + len(self.task_columns))
        row = np.zeros(self.ring.width)
        row[TIME], row[USED], row[MANAGER] = at, used, manager
        for task, nbytes in per_task.items():
            row[self.task_columns[task]] = nbytes
        self.ring.append(row)

    def since(self, t0: float) -> NDArray[np.float64]:
        return self.ring.since(t0)


class HostTierHistory(DeviceHistory):
    """The host-RAM tier over time: bytes parked (the tier's own count), its budget, and what
    each parked task holds there (the bytes its ModelParked event said). Rows only while the
    tier is on; `tier` is the latest reading, on or off."""

    def __init__(self, capacity: int) -> None:
        super().__init__("host RAM tier", capacity)
        self.tier: HostTierInfo | None = None

    def add_tier(self, at: float, tier: HostTierInfo, per_task: Mapping[str, int]) -> None:
        self.tier = tier
        if tier.enabled:
            self._append(at, tier.used, tier.budget, per_task)


class MemoryHistory:
    """Every device's samples for `history_s` seconds at `rate_hz`, and the markers."""

    def __init__(self, history_s: float = 3600.0, rate_hz: float = 10.0) -> None:
        # 10% headroom: the monitor's interval is a minimum, so samples come a bit slower.
        self.capacity = max(16, math.ceil(round(history_s * rate_hz * 1.1, 6)))
        self.devices: dict[str, DeviceHistory] = {}
        self.markers: deque[Marker] = deque(maxlen=5000)
        self._held: dict[str, dict[str, int]] = {}  # device → task → bytes, from the events
        self.host_tier = HostTierHistory(self.capacity)
        self._parked_bytes: dict[str, int] = {}  # task → bytes its last park copied to RAM

    def add_sample(self, sample: MemorySample) -> None:
        history = self.devices.get(sample.device)
        if history is None:
            history = self.devices[sample.device] = DeviceHistory(sample.device, self.capacity)
        history.add(sample)
        tier = sample.host_tier
        if tier is not None:
            parked = {t: self._parked_bytes.get(t, 0) for t in tier.parked}
            self.host_tier.add_tier(sample.at, tier, parked)

    def add_event(self, entry: LogEntry) -> Marker | None:
        """Keep a marker for a load, eviction, unload or failure; None for other events."""
        if entry.kind == "ModelParked" and entry.bytes is not None:
            self._parked_bytes[entry.task] = entry.bytes
        kind = MARKER_KINDS.get(entry.kind)
        if kind is None or (not entry.device and kind != "fail"):
            return None  # an external API holds no memory on any device
        device = entry.device or self._any_device()
        then = self._level(device, entry, kind)
        marker = Marker(entry.at, device, kind, int(then), marker_text(entry), entry.task)
        self.markers.append(marker)
        return marker

    def _level(self, device: str, entry: LogEntry, kind: str) -> int:
        """Where the marker sits: what the manager's models held on `device` just after a load,
        or just before an eviction or unload began. Counted from the events, not the samples:
        the manager stops counting a model before its eviction ends, and samples come only ten
        times a second."""
        held = self._held.setdefault(device, {})
        if kind in ("load", "restore", "wake"):
            held[entry.task] = entry.bytes or 0
        level = sum(held.values())
        if kind in ("evict", "unload", "park", "sleep") or entry.kind == "ModelCrashed":
            held.pop(entry.task, None)
        return level

    def _any_device(self) -> str:
        return next(iter(self.devices), "cpu")

    def markers_since(self, device: str, t0: float) -> list[Marker]:
        found: list[Marker] = []
        for marker in reversed(self.markers):
            if marker.at < t0:
                break
            if marker.device == device:
                found.append(marker)
        return found[::-1]


def marker_text(entry: LogEntry) -> str:
    """The tooltip of a marker: what happened, to what, when, and why."""
    what = {
        "ModelLoaded": "Loaded",
        "ModelEvicted": "Evicted",
        "ModelUnloaded": "Unloaded",
        "LoadFailed": "Load failed",
        "ModelCrashed": "Crashed",
        "ModelParked": "Parked in RAM",
        "ModelRestored": "Restored from RAM",
        "ModelSlept": "Asleep",
        "ModelWoken": "Woken",
    }.get(entry.kind, entry.kind)
    model = f" ({short_model_id(entry.model)})" if entry.model else ""
    lines = [f"{what}: {entry.task}{model}", fmt_clock(entry.at)]
    if entry.bytes is not None:
        lines.append(fmt_bytes(entry.bytes))
    if entry.duration_s is not None:
        lines.append(f"took {fmt_duration(entry.duration_s)}")
    if entry.reason:
        lines.append(entry.reason)
    return "\n".join(lines)


__all__ = ["FIRST_TASK", "MANAGER", "MARKER_KINDS", "PARKED", "TIER_BUDGET", "TIME", "USED",
           "DeviceHistory", "HostTierHistory", "Marker", "MemoryHistory",
           "marker_text"]  # fmt: skip
