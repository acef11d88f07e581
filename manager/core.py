"""What the manager's services share: the config in force, the task table, the devices, the
ledger, the loaders and the event hub; and the small rules every service applies the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Config, InferenceConfig, ModelConfig, TaskConfig
from .devices import DevicePool, Reservation
from .errors import unknown_task
from .events import Event, EventHub, MemorySampled
from .ledger import Ledger
from .loaders import LoaderRegistry
from .loaders.base import AsyncLoader, as_async
from .lru import TaskTable
from .memory import HOST, MemoryProbe
from .residency import HostTier, default_host_cache_bytes
from .units import GIB

#: The pseudo-device of models that hold no local memory (external APIs).
NO_DEVICE = "none"


class Meter:
    """A device as a load or an unload sees it (`DeviceMeter`); blocking reads."""

    def __init__(self, devices: DevicePool, device: str, reservation: Reservation | None = None):
        self._devices, self._device, self._reservation = devices, device, reservation
        self._attributable = devices.probe.attributes_frees(device)

    def used(self) -> int | None:
        return self._devices.read(self._device).used if self._attributable else None

    def allocating(self, used: int | None) -> None:
        if self._reservation is not None and used is not None:
            self._reservation.started_used = used


class Core:
    """The shared state of one manager; the services and the façade all read it from here."""

    def __init__(
        self, config: Config, registry: LoaderRegistry, ledger: Ledger, probe: MemoryProbe | None
    ) -> None:
        self.devices = DevicePool(probe)
        self.events = EventHub()
        self.ledger = ledger
        self.table = TaskTable(config.tasks)
        self.last_samples: dict[str, MemorySampled] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self._adapted: dict[int, AsyncLoader] = {}
        self._registry = registry
        # Parked models' bookkeeping; the host's free RAM as the probe reads it (psutil's
        # `available` on a real machine). Its budget follows the config (see `use_config`).
        self.host_tier = HostTier(0, lambda: self.devices.read(HOST).free)
        self.use_config(config)

    def use_config(self, config: Config) -> None:
        """Put `config` in force; options whose loader is missing are marked unavailable."""
        self.config_path: Path = config.path
        self.raw: dict[str, Any] = config.raw
        self.tasks: dict[str, TaskConfig] = config.tasks
        self.inference: InferenceConfig = config.inference
        self.host_tier.budget_bytes = self._host_cache_bytes()
        self._mark_availability()

    def _host_cache_bytes(self) -> int:
        """`inference.host_cache_gb` in bytes; unset: a quarter of the host's RAM (read lazily,
        at the first eviction, so building a manager reads no device)."""
        gb = self.inference.host_cache_gb
        return -1 if gb is None else int(gb * GIB)

    def host_cache_budget(self) -> int:
        """The host tier's budget now, the default read from the probe on first use."""
        if self.host_tier.budget_bytes < 0:
            total = self.devices.read(HOST).total
            self.host_tier.budget_bytes = default_host_cache_bytes(total)
        return self.host_tier.budget_bytes

    def _mark_availability(self) -> None:
        for task in self.tasks.values():
            for option in task.options.values():
                option.unavailable_reason = option.unset_variables_reason() or (
                    self.registry.unavailable_reason(option)
                )

    @property
    def registry(self) -> LoaderRegistry:
        return self._registry

    @registry.setter
    def registry(self, registry: LoaderRegistry) -> None:
        self._registry = registry
        self._adapted.clear()
        self._mark_availability()  # a new registry decides anew what can load here

    def task(self, name: str) -> TaskConfig:
        """The task's config; the seed's ValueError for an unknown task."""
        task = self.tasks.get(name)
        if task is None:
            raise unknown_task(name, self.tasks)
        return task

    def loader(self, option: ModelConfig) -> AsyncLoader:
        """The async loader of `option`'s framework (LoaderUnavailable if there is none)."""
        raw = self.registry.get(option.framework)
        adapted = self._adapted.get(id(raw))
        if adapted is None:
            adapted = self._adapted[id(raw)] = as_async(raw, self.devices)
        return adapted

    def holds_device_memory(self, option: ModelConfig) -> bool:
        """Whether `option` takes local memory: its loader says; without one, its framework.
        The one place that decides, for loads and for budget checks alike."""
        if option.framework in self.registry.frameworks:
            return self.loader(option).holds_device_memory
        return not option.is_external

    def required_bytes(self, option: ModelConfig, device: str) -> int:
        """What `option` will take on `device`: 0 if it holds no memory, else the ledger's
        measured figure, else the config's estimate."""
        if not self.holds_device_memory(option):
            return 0
        measured = self.ledger.measured_bytes(option, device)
        return measured if measured is not None else option.vram_bytes

    def meter(self, device: str, reservation: Reservation | None = None) -> Meter:
        return Meter(self.devices, device, reservation)

    def emit(self, event: Event) -> None:
        if isinstance(event, MemorySampled):
            self.last_samples[event.device] = event
        self.events.emit(event)

    def call_on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn` on the loop's thread: now when called there, else soon (from a worker)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)


__all__ = ["NO_DEVICE", "Core", "Meter"]
