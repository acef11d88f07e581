"""What a preview reads of the real manager: `Lookups`, kept across previews until the config,
the loaders or the ledger change, and `Reads`, read once per preview and shared by its plays.

A warm-up preview plays up to fifty loads, each asking what an option takes, its loader, the
ledger's restore figures, the pool's reservations and the budget settings; none of them changes
while a preview runs (it is synchronous, on the loop; only a load landing or a config reload
changes them), so each is asked of the real manager once and remembered.
"""

from __future__ import annotations

from typing import Any

from .config import InferenceConfig, ModelConfig
from .core import Core
from .devices import DevicePool
from .ledger import Ledger
from .loaders.base import AsyncLoader


class Lookups:
    """What each option takes on a device, whether it holds device memory, its loader, and the
    ledger's restore figures. They change only with the config (a reload makes new tasks), the
    loaders (a new registry) or the ledger (its `version`), so previews share them until
    `current` says one of those changed."""

    def __init__(self, core: Core) -> None:
        self._core = core
        # Held, not only compared: while they are, no new config or registry takes their ids,
        # and the options' ids below stay theirs.
        self._tasks, self._registry, self._version = core.tasks, core.registry, core.ledger.version
        self.ledger = LedgerView(core.ledger)
        self._required: dict[tuple[int, float, str], int] = {}
        self._holds: dict[int, bool] = {}
        self._loaders: dict[int, AsyncLoader] = {}

    def current(self) -> bool:
        core = self._core
        return (
            core.tasks is self._tasks
            and core.registry is self._registry
            and core.ledger.version == self._version
        )

    def required_bytes(self, option: ModelConfig, device: str) -> int:
        key = (id(option), option.vram_gb, device)  # (an option's estimate may be set in place)
        found = self._required.get(key)
        if found is None:
            found = self._required[key] = self._core.required_bytes(option, device)
        return found

    def holds_device_memory(self, option: ModelConfig) -> bool:
        found = self._holds.get(id(option))
        if found is None:
            found = self._holds[id(option)] = self._core.holds_device_memory(option)
        return found

    def loader(self, option: ModelConfig) -> AsyncLoader:
        found = self._loaders.get(id(option))
        if found is None:
            found = self._loaders[id(option)] = self._core.loader(option)
        return found


class Reads:
    """What one preview reads of the real manager, shared by its plays (a warm-up preview plays
    two): the `Lookups` (`lookups`, when still current, else new ones), the pool's reservations
    and the budget settings, read at the preview (a load in flight or a new budget changes them
    between previews, never during one)."""

    def __init__(self, core: Core, lookups: Lookups | None = None) -> None:
        self.lookups = lookups if lookups is not None and lookups.current() else Lookups(core)
        self.inference = InferenceView(core.inference)
        self.devices = PoolView(core.devices)
        self.ledger = self.lookups.ledger
        self.required_bytes = self.lookups.required_bytes
        self.holds_device_memory = self.lookups.holds_device_memory
        self.loader = self.lookups.loader


class InferenceView:
    """The two budget settings every plan reads, as plain attributes (`memory_budget_bytes` is
    a property computed at each read); the others from the real settings."""

    def __init__(self, inference: InferenceConfig) -> None:
        self._inference = inference
        self.offload_threshold = inference.offload_threshold
        self.memory_budget_bytes = inference.memory_budget_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inference, name)


class LedgerView:
    """The ledger's restore figures, each looked up once while its `Lookups` are current."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._restore: dict[tuple[int, str, str], float | None] = {}

    def restore_seconds(self, option: ModelConfig, device: str, tier: str) -> float | None:
        key = (id(option), device, tier)
        if key not in self._restore:
            self._restore[key] = self._ledger.restore_seconds(option, device, tier)
        return self._restore[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


class PoolView:
    """The device pool's reservations, summed once per device per preview (a load in flight
    changes them only on the loop, which a preview holds); the rest the real pool."""

    def __init__(self, pool: DevicePool) -> None:
        self._pool = pool
        self._reserved: dict[str, int] = {}

    def reserved(self, device: str) -> int:
        found = self._reserved.get(device)
        if found is None:
            found = self._reserved[device] = self._pool.reserved(device)
        return found

    def outstanding(self, device: str, used_now: int) -> int:
        # No reservation on the device (nearly always): nothing outstanding, nothing to sum.
        reserved = self._reserved.get(device)
        if reserved is None:
            reserved = self.reserved(device)
        return self._pool.outstanding(device, used_now) if reserved else 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


__all__ = ["InferenceView", "LedgerView", "Lookups", "PoolView", "Reads"]
