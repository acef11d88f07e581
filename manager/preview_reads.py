"""What a preview reads of the real manager, once: `Reads`, shared by the plays of one preview.

A warm-up preview plays up to fifty loads, each asking what an option takes, its loader, the
ledger's restore figures, the pool's reservations and the budget settings; none of them changes
while a preview runs (it is synchronous, on the loop; only a load landing or a config reload
changes them), so each is asked of the real manager once and remembered for the preview.
"""

from __future__ import annotations

from typing import Any

from .config import InferenceConfig, ModelConfig
from .core import Core
from .devices import DevicePool
from .ledger import Ledger
from .loaders.base import AsyncLoader


class Reads:
    """What one preview reads of the real manager, each once and shared by its plays (a warm-up
    preview plays two): what each option takes, its loader, the ledger's restore figures, the
    pool's reservations, the budget settings. None of them changes while a preview runs: it is
    synchronous, on the loop, and only a load landing or a config reload changes them."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self.inference = InferenceView(core.inference)
        self.devices = PoolView(core.devices)
        self.ledger = LedgerView(core.ledger)
        self._required: dict[tuple[int, str], int] = {}
        self._holds: dict[int, bool] = {}
        self._loaders: dict[int, AsyncLoader] = {}

    def required_bytes(self, option: ModelConfig, device: str) -> int:
        key = (id(option), device)  # the config's options outlive the preview: ids stay theirs
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
    """The ledger's restore figures, each looked up once per preview (they change only when a
    real load or restore lands, never during one)."""

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


__all__ = ["InferenceView", "LedgerView", "PoolView", "Reads"]
