"""ModelManager: loads models on demand, keeps every device under its budget, evicts by LRU.

A façade: it keeps every name of the original ``model_manager`` document (seed), sync or async
as it lists them, over services with one job each: `loading` (place, make room, load, measure),
`eviction` (choose victims, unload, verify), `selection` (options and pins), `status` (typed
snapshots and the seed's dicts) and `housekeeping` (health, idle models, samples). Blocking work
runs in one named worker thread per device, so the event loop never waits on a load and a
device's memory delta around a load belongs to that load. Events are emitted on the loop's
thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from . import telemetry as tm
from .beyond_seed import BeyondSeed
from .budget import manager_limit
from .config import InferenceConfig, TaskConfig, load_config
from .core import NO_DEVICE, Core
from .devices import DevicePool
from .errors import ModelInUseError, unknown_option
from .events import EventHub, RemovalReason
from .eviction import Eviction
from .housekeeping import Housekeeping
from .inference import Inference
from .ledger import Ledger, default_ledger_path
from .loaders import Loader, LoaderRegistry
from .loaders.external_api import ExternalAPIConfig, external_api_config
from .loading import Loading
from .lru import LoadTimesView, MemoryUsageView, ModelsView
from .memory import HOST, DeviceReading, MemoryProbe, is_cuda
from .monitor import Housekeeper, MemoryMonitor
from .preview import Previews
from .selection import LEASE_WAIT_S, Selection
from .status import (
    BudgetCheck,
    check_budget,
    loaded_models_info,
)
from .thrash import ThrashWatch
from .warmup import WarmingUp, WarmUp

logger = logging.getLogger(__name__)


class ModelManager(BeyondSeed):
    """Manages loading, unloading, and memory management of AI models.

    Attributes
    ----------
    config_path : Path
        Path to models.yaml configuration file.
    config : dict[str, Any]
        Parsed configuration dictionary.
    loaded_models : Mapping[str, Any]
        Currently loaded models (LRU ordered: first is least recently used); a read-only view.
    model_load_times : Mapping[str, float]
        Timestamp (time.time()) when each model was loaded; a read-only view.
    model_memory_usage : Mapping[str, int]
        Measured memory usage per model in bytes; a read-only view.
    tasks : dict[str, TaskConfig]
        Task configurations.
    inference_config : InferenceConfig
        Global inference settings.
    events : EventHub
        Subscribe to the manager's events; ``subscribe`` returns an unsubscriber.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str],
        *,
        probe: MemoryProbe | None = None,
        loaders: Iterable[Loader] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        registry = LoaderRegistry(loaders) if loaders is not None else LoaderRegistry.default()
        ledger = ledger if ledger is not None else Ledger(default_ledger_path())
        self._core = core = Core(load_config(config_path), registry, ledger, probe)
        self._eviction = Eviction(core)
        self._loading = Loading(core, self._eviction)
        self._selection = Selection(core, self._loading, self._eviction)
        self._housekeeping = Housekeeping(core, self._eviction)
        self._warming = WarmingUp(core, self)
        self.loaded_models: Mapping[str, Any] = ModelsView(core.table)
        self.model_load_times: Mapping[str, float] = LoadTimesView(core.table)
        self.model_memory_usage: Mapping[str, int] = MemoryUsageView(core.table)
        self.monitor = MemoryMonitor(self.device_readings, self._housekeeping.sample)
        self._housekeeper = Housekeeper(self._housekeeping.check_health)
        self._thrash = ThrashWatch.of(core)
        core.events.subscribe(self._thrash.observe)
        self._previews = Previews(core, self._thrash.load_s)
        tm.observe_memory(self._housekeeping)

    # ----------------------------------------------------------------- state

    config_path = property(lambda self: self._core.config_path, doc="The config file in force.")
    config = property(lambda self: self._core.raw, doc="The parsed configuration dictionary.")
    events: EventHub = property(lambda self: self._core.events)  # type: ignore[assignment]
    devices: DevicePool = property(lambda self: self._core.devices)  # type: ignore[assignment]

    @property
    def tasks(self) -> dict[str, TaskConfig]:
        return self._core.tasks

    @property
    def inference_config(self) -> InferenceConfig:
        return self._core.inference

    @property
    def registry(self) -> LoaderRegistry:
        return self._core.registry

    @registry.setter
    def registry(self, registry: LoaderRegistry) -> None:
        self._core.registry = registry

    @property
    def inference(self) -> Inference:
        """Generation and embeddings on this manager's models (what warm-ups run), created on
        first use; its workers are released at shutdown."""
        return self._warming.inference

    @property
    def ledger(self) -> Ledger:
        return self._core.ledger

    @property
    def probe(self) -> MemoryProbe:
        """The memory probe; detected on first use (NVML, else torch, plus host RAM)."""
        return self._core.devices.probe

    def _started(self) -> None:
        if self._core.closing:
            raise RuntimeError("the manager was shut down")
        self._core.loop = asyncio.get_running_loop()
        self._housekeeper.ensure_running()

    # ----------------------------------------------------------------- memory queries (seed)

    def _primary_readings(self) -> list[DeviceReading]:
        cuda = [d for d in self.devices.names() if is_cuda(d)]
        return [self.devices.read(d) for d in (cuda or [HOST])]

    def get_available_vram(self) -> int:
        """Free memory in bytes, summed over the CUDA devices (system RAM when there are none)."""
        return sum(r.free for r in self._primary_readings())

    def get_total_vram(self) -> int:
        """Total memory in bytes, summed over the CUDA devices (system RAM when there are none)."""
        return sum(r.total for r in self._primary_readings())

    def get_memory_usage_percentage(self) -> float:
        """Current memory usage as a fraction (0.0 to 1.0) of those devices' total."""
        readings = self._primary_readings()
        total = sum(r.total for r in readings)
        return sum(r.used for r in readings) / total if total else 0.0

    def check_memory_available(self, required_bytes: int) -> bool:
        """Whether `required_bytes` fit now, within budget, without evicting: within
        `get_available_vram()` and on some device's budget."""
        available = self.get_available_vram()
        readings = self._primary_readings()
        if len(readings) == 1:  # the seed's figure is this device's: honour an override
            r = readings[0]
            readings = [dataclasses.replace(r, used=max(0, r.total - available))]
        fits = any(self._eviction.shortfall(r.device, r, required_bytes) <= 0 for r in readings)
        return fits and required_bytes <= available

    def required_bytes(self, option: Any, device: str) -> int:
        """What `option` will take on `device`: the ledger's measured figure, else the estimate."""
        return self._core.required_bytes(option, device)

    def budget_bytes(self, device: str, total: int) -> int:
        """What the manager's models may hold on a device of `total` bytes."""
        return manager_limit(total, self.inference_config)

    def device_readings(self) -> dict[str, DeviceReading]:
        """A fresh reading of every device (blocks briefly: call it off the GUI thread)."""
        return {d: self.devices.read(d) for d in self.devices.names()}

    # ----------------------------------------------------------------- LRU, loading (seed)

    def get_lru_model(self) -> str | None:
        """Task name of the least recently used model that may be evicted, or None; models
        that hold memory come first (an external API frees nothing)."""
        loaded = self._core.table.lru()
        return loaded.task if loaded else None

    async def evict_lru_model(self) -> str | None:
        """Evict the least recently used model (parked in RAM or put to sleep where its tier
        admits it); returns its task, or None if none can go."""
        loaded = self._core.table.lru()
        if loaded is None:
            return None
        removed = await self._eviction.unload(
            loaded, RemovalReason.EVICT, evicted=True, tiered=True
        )
        return loaded.task if removed else None

    async def load_model(self, task_type: str) -> Any:
        """Load the selected model of `task_type`, evicting LRU models to make room.

        Concurrent calls for one task share one load. Raises ValueError for an unknown task or a
        model that cannot load (ModelLoadError), RuntimeError (InsufficientMemoryError) when even
        evicting every candidate would not make room.
        """
        self._core.task(task_type)
        self._started()
        await self._selection.settled(task_type)
        return await self._loading.load(task_type)

    async def get_model(self, task_type: str) -> Any:
        """Get the model for `task_type`, loading it if necessary."""
        return await self.load_model(task_type)

    @contextlib.asynccontextmanager
    async def use(self, task_type: str) -> AsyncIterator[Any]:
        """Hold a task's model: it is loaded if needed and never evicted until the block ends."""
        async with self._loading.hold(task_type, self.load_model) as model:
            yield model

    async def unload_model(self, task_type: str) -> None:
        """Unload the model of `task_type`; logs and returns when it is not loaded or not
        configured (as the seed). Raises ModelInUseError while callers hold it via ``use()``."""
        if task_type not in self.tasks:
            logger.warning("unload_model(%r): no such task; nothing to unload", task_type)
            return
        await self._loading.settle(task_type)
        loaded = self._core.table.loaded(task_type)
        entry = self._core.table.entry(task_type)
        if loaded is None and entry.suspended is not None:
            await self._eviction.drop(entry, RemovalReason.USER)  # parked or asleep: drop it
            return
        if loaded is None:
            logger.info("unload_model(%r): not loaded; nothing to unload", task_type)
            return
        await self._eviction.unload(loaded, RemovalReason.USER)

    # ----------------------------------------------------------------- selection and pins

    async def set_selected_model(self, task_type: str, model_name: str) -> None:
        """Select `model_name` for `task_type`; a loaded task switches to the new model.

        If the new model fails to load, the old selection is restored (and reloaded) and the
        error is raised. A cancelled caller does not cancel a switch half-way. Raises the
        seed's ValueError for an unknown task or option name.
        """
        task = self._core.task(task_type)
        if model_name not in task.options:
            raise unknown_option(model_name, task_type, task.options)
        self._started()
        await self._selection.select(task_type, model_name)

    def set_pinned(self, task_type: str, pinned: bool) -> None:
        """Pin a task's model (never evicted, though it can still be unloaded) or unpin it."""
        self._selection.set_pinned(task_type, pinned)

    # ----------------------------------------------------------------- information (seed)

    def get_loaded_models(self) -> dict[str, dict[str, Any]]:
        """task → model_id, memory_usage_gb (measured), estimated_gb, device, load_time, …"""
        return loaded_models_info(self._core)

    def get_model_config(self, task_type: str) -> TaskConfig | None:
        """The configuration of `task_type`, or None if there is no such task."""
        return self.tasks.get(task_type)

    def check_budget(self, *, readings: Mapping[str, DeviceReading] | None = None) -> BudgetCheck:
        """The typed plan behind `validate_memory_budget`, in bytes."""
        seed = type(self).get_total_vram, type(self).get_available_vram
        overridden = seed != (ModelManager.get_total_vram, ModelManager.get_available_vram)
        figures = (self.get_total_vram(), self.get_available_vram()) if overridden else None
        return check_budget(self._core, readings or self.device_readings(), figures)

    def validate_memory_budget(
        self, *, readings: Mapping[str, DeviceReading] | None = None
    ) -> dict[str, Any]:
        """Whether the selected models of all tasks fit their devices' budgets together.

        Returns the seed's keys (valid, total_vram_gb, total_required_gb, threshold,
        max_allowed_gb, model_requirements) and ``devices``: the plan per device. Pass
        `readings` (from `device_readings()`, read off the loop) to read no device here.
        """
        return self.check_budget(readings=readings).as_seed_dict()

    def is_external_api(self, task_type: str) -> bool:
        """Whether `task_type`'s selected model is an external API. ValueError if no such task."""
        return self._core.task(task_type).get_selected_config().is_external

    def get_external_api_config(self, task_type: str) -> ExternalAPIConfig:
        """The external API client config of `task_type`: ValueError for a local task, or when
        the key it requires is not set."""
        option = self._core.task(task_type).get_selected_config()
        if not option.is_external:
            raise ValueError(f"{task_type} does not use external API (it uses {option.framework})")
        return external_api_config(option, require_key=True)

    # ----------------------------------------------------------------- lifecycle

    async def warm_up(self, task_type: str) -> WarmUp:
        """Load `task_type` and run one small inference on it (see `warmup.WarmingUp`); the
        latency is kept in the ledger (`TaskStatus.first_inference_s`). Raises as `load_model`."""
        self._core.task(task_type)
        return await self._warming.warm_up(task_type)

    async def warmup_models(self, *, force: bool = False) -> None:
        """Load every selected model, in config order, if warmup_on_startup is set (or `force`),
        and warm each up (`warm_up`).

        A model that fails is reported (LoadFailed) and the others still load.
        """
        if not (force or self.inference_config.warmup_on_startup):
            return
        for name, task in self.tasks.items():
            if task.get_selected_config().unavailable_reason:
                continue
            try:
                await self.warm_up(name)
            except (ValueError, RuntimeError) as exc:
                logger.warning("warm-up of %s failed: %s", name, exc)

    async def reload_config(
        self, path: str | os.PathLike[str] | None = None, *, lease_wait_s: float = LEASE_WAIT_S
    ) -> None:
        """Read the config again (or another one). On error the current config stays in force.

        Models whose task still selects an option that loads the same way stay loaded; the
        others are unloaded, after loads in flight finish. A model held through ``use()`` is
        never freed under its holder: the reload waits up to `lease_wait_s` for it to be
        released, then fails with ModelInUseError, and the current config stays in force.
        """
        await self._selection.reload(load_config(path or self.config_path), lease_wait_s)

    async def unload_all(self, *, reason: RemovalReason = RemovalReason.USER) -> None:
        """Unload every loaded model, pinned and held ones too, after loads in flight finish."""
        await self._loading.drain()
        for loaded in self._core.table.residents():
            await self._eviction.unload(loaded, reason, force=True)
        for entry in self._core.table.entries():
            await self._eviction.drop(entry, reason)

    def start_monitor(self, interval_s: float = 0.1) -> None:
        """Sample every device every `interval_s` and emit MemorySampled (needs a running loop)."""
        self._started()
        self.monitor.start(interval_s)

    async def shutdown(self) -> None:
        """Unload all models and release the workers, the monitor and device handles.

        New loads are refused from the start; loads in flight finish and are unloaded too.
        """
        if self._core.closing:
            return
        self._core.closing = True
        try:
            await self.monitor.stop()
            await self._housekeeper.stop()
            await self._warming.close()
            await self.unload_all(reason=RemovalReason.SHUTDOWN)
        finally:
            await self.devices.close()

    def __repr__(self) -> str:
        loaded = list(self.loaded_models)
        return f"ModelManager({str(self.config_path)!r}, tasks={len(self.tasks)}, loaded={loaded})"


__all__ = ["NO_DEVICE", "ModelInUseError", "ModelManager"]
