"""ModelManager: loads models on demand, keeps every device under its budget, evicts by LRU.

The API keeps every name of the original ``model_manager`` document (seed), sync or async as it
lists them. Blocking work runs in one named worker thread per device, so the event loop never
waits on a load and a device's memory delta around a load belongs to that load. Events are
emitted on the loop's thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import metrics
from opentelemetry.trace import Span, Status, StatusCode

from . import telemetry as tm
from .budget import manager_limit, plan_placement, shortfall
from .config import GIB, InferenceConfig, ModelConfig, TaskConfig, load_config
from .errors import InsufficientMemoryError, ModelInUseError, ModelLoadError
from .events import (
    ConfigReloaded,
    Event,
    EventHub,
    LoadFailed,
    LoadProgress,
    MemoryNotReturned,
    MemorySampled,
    ModelCrashed,
    ModelEvicted,
    ModelLoaded,
    ModelLoading,
    ModelUnloaded,
    PinChanged,
    SelectionChanged,
    ServerOutput,
)
from .ledger import Ledger, default_ledger_path
from .loaders import LoadContext, Loader, LoaderRegistry
from .loaders.external_api import ExternalAPIConfig, external_api_config
from .lru import Entry, LruTable
from .memory import HOST, DeviceReading, MemoryProbe, SystemProbe, is_cuda, torch_cached_free
from .monitor import Housekeeper, MemoryMonitor

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The pseudo-device of models that hold no local memory (external APIs).
NO_DEVICE = "none"
#: A freed model counts as returned once the device shows this share of its bytes free again.
RETURNED_SHARE = 0.9


def _gb(n: int | float) -> str:
    return f"{n / GIB:.2f} GiB"


class ModelManager:
    """Manages loading, unloading, and memory management of AI models.

    Attributes
    ----------
    config_path : Path
        Path to models.yaml configuration file.
    config : dict[str, Any]
        Parsed configuration dictionary.
    loaded_models : OrderedDict[str, Any]
        Currently loaded models (LRU ordered: first is least recently used).
    model_load_times : dict[str, float]
        Timestamp (time.time()) when each model was loaded.
    model_memory_usage : dict[str, int]
        Measured memory usage per model in bytes.
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
        loaded = load_config(config_path)
        self.config_path: Path = loaded.path
        self.config: dict[str, Any] = loaded.raw
        self.tasks: dict[str, TaskConfig] = loaded.tasks
        self.inference_config: InferenceConfig = loaded.inference
        self.loaded_models: OrderedDict[str, Any] = OrderedDict()
        self.model_load_times: dict[str, float] = {}
        self.model_memory_usage: dict[str, int] = {}
        self.events = EventHub()
        self.registry = LoaderRegistry(loaders) if loaders is not None else LoaderRegistry.default()
        self.ledger = ledger if ledger is not None else Ledger(default_ledger_path())
        self._probe = probe
        self._lru = LruTable()
        self._loading: dict[str, asyncio.Task[Any]] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._reserved: dict[str, int] = defaultdict(int)
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failures: dict[str, str] = {}
        self._progress: dict[str, tuple[float | None, str]] = {}
        self._last_samples: dict[str, MemorySampled] = {}
        self._load_durations: dict[str, float] = {}
        self._closed = False
        self.monitor = MemoryMonitor(self)
        self._housekeeper = Housekeeper(self)
        self._mark_availability()
        self._init_metrics()

    # ----------------------------------------------------------------- set-up and helpers

    @property
    def probe(self) -> MemoryProbe:
        """The memory probe; detected on first use (NVML, else torch, plus host RAM)."""
        if self._probe is None:
            self._probe = SystemProbe.detect()
        return self._probe

    def _mark_availability(self) -> None:
        for task in self.tasks.values():
            for option in task.options.values():
                option.unavailable_reason = self.registry.unavailable_reason(option)

    def _init_metrics(self) -> None:
        found = tm.instruments()
        self._load_hist = found.load_duration
        self._evictions = found.evictions
        tm.observe_memory(self)

    def memory_observations(self) -> Iterable[metrics.Observation]:
        """The last samples as gauge observations (the SDK's reader thread calls this: it reads
        the last samples only, never the hardware)."""
        for device, s in list(self._last_samples.items()):
            yield metrics.Observation(s.used_bytes, {"device": device, "holder": "all"})
            yield metrics.Observation(s.manager_bytes, {"device": device, "holder": "vramdeck"})

    def _task(self, task_type: str) -> TaskConfig:
        task = self.tasks.get(task_type)
        if task is None:
            valid = ", ".join(self.tasks) or "none"
            raise ValueError(f"unknown task {task_type!r}; tasks: {valid}")
        return task

    def _emit(self, event: Event) -> None:
        if isinstance(event, MemorySampled):
            self._last_samples[event.device] = event
        self.events.emit(event)

    def _emit_threadsafe(self, event: Event) -> None:
        """For callbacks that loaders may call from a worker thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._emit(event)
        else:
            loop.call_soon_threadsafe(self._emit, event)

    def _executor(self, device: str) -> ThreadPoolExecutor:
        if device not in self._executors:
            name = f"vramdeck-{device.replace(':', '')}"
            self._executors[device] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return self._executors[device]

    async def _in_worker(self, device: str, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking `fn` in `device`'s worker (one thread per device)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(device), fn, *args)

    def _started(self) -> None:
        if self._closed:
            raise RuntimeError("the manager was shut down")
        self._loop = asyncio.get_running_loop()
        self._housekeeper.ensure_running()

    def _read(self, device: str) -> DeviceReading:
        """The device as this process can use it: torch's free cached blocks count as free."""
        reading = self.probe.read(device)
        cached = torch_cached_free(device)
        return dataclasses.replace(reading, used=reading.used - cached) if cached else reading

    def _devices(self) -> list[str]:
        return self.probe.devices()

    def _cuda_devices(self) -> list[str]:
        return [d for d in self._devices() if is_cuda(d)]

    def _loader(self, option: ModelConfig) -> Loader:
        return self.registry.get(option.framework)

    def required_bytes(self, option: ModelConfig, device: str) -> int:
        """What `option` will take on `device`: the ledger's measured figure, else the estimate."""
        measured = self.ledger.measured_bytes(option, device)
        return measured if measured is not None else option.vram_bytes

    # ----------------------------------------------------------------- memory queries (seed)

    def _primary_readings(self) -> list[DeviceReading]:
        cuda = self._cuda_devices()
        return [self._read(d) for d in (cuda or [HOST])]

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
        """Whether some device could take `required_bytes` now, within budget, without evicting."""
        devices = self._cuda_devices() or [HOST]
        return any(self._shortfall_now(d, required_bytes) <= 0 for d in devices)

    def _shortfall_now(self, device: str, required: int) -> int:
        return shortfall(
            self._read(device),
            own=self._lru.bytes_on(device),
            reserved=self._reserved[device],
            required=required,
            inference=self.inference_config,
        )

    # ----------------------------------------------------------------- LRU (seed)

    def get_lru_model(self) -> str | None:
        """Task name of the least recently used model that may be evicted, or None."""
        entry = self._lru.lru()
        return entry.task if entry else None

    async def evict_lru_model(self) -> str | None:
        """Evict the least recently used model; returns its task, or None if none can go."""
        entry = self._lru.lru()
        if entry is None:
            return None
        async with self._locks[entry.device]:
            if self._lru.get(entry.task) is not entry or not entry.evictable:
                return None
            await self._remove(entry, evicted=True, reason="evict_lru_model requested")
        return entry.task

    # ----------------------------------------------------------------- loading (seed)

    async def load_model(self, task_type: str) -> Any:
        """Load the selected model of `task_type`, evicting LRU models to make room.

        Concurrent calls for one task share one load. Raises ValueError for an unknown task or a
        model that cannot load (ModelLoadError), RuntimeError (InsufficientMemoryError) when even
        evicting every candidate would not make room.
        """
        self._task(task_type)
        self._started()
        if task_type in self.loaded_models:
            self._touch(task_type)
            return self.loaded_models[task_type]
        flight = self._loading.get(task_type)
        if flight is None:
            flight = asyncio.ensure_future(self._load(task_type))
            # Retrieve the outcome even when every caller was cancelled: it was reported already.
            flight.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._loading[task_type] = flight
            flight.add_done_callback(lambda f: self._loading.pop(task_type, None))
        # Shielded: a cancelled caller must not abandon a load that is filling a device.
        return await asyncio.shield(flight)

    async def get_model(self, task_type: str) -> Any:
        """Get the model for `task_type`, loading it if necessary."""
        return await self.load_model(task_type)

    @contextlib.asynccontextmanager
    async def use(self, task_type: str) -> AsyncIterator[Any]:
        """Hold a task's model: it is loaded if needed and never evicted until the block ends."""
        model = await self.load_model(task_type)
        entry = self._lru.get(task_type)
        if entry is not None:
            entry.leases += 1
        try:
            yield model
        finally:
            if entry is not None:
                entry.leases -= 1
                if self._lru.get(task_type) is entry:
                    self._touch(task_type)

    def _touch(self, task: str) -> None:
        if task in self._lru:
            self._lru.touch(task)
            self.loaded_models.move_to_end(task)

    async def _load(self, task_type: str) -> Any:
        task = self._task(task_type)
        option = task.get_selected_config()
        started = time.monotonic()
        attrs = {
            tm.ATTR_TASK: task_type,
            tm.ATTR_MODEL_ID: option.model_id,
            tm.ATTR_OPTION: option.name,
        }
        with tm.tracer().start_as_current_span(tm.SPAN_LOAD, attributes=attrs) as span:
            device = NO_DEVICE
            try:
                if option.unavailable_reason:
                    raise ModelLoadError(
                        task_type, f"{option.name} cannot load here: {option.unavailable_reason}"
                    )
                loader = self._loader(option)
                device = await self._place(task_type, option, loader)
                required = self.required_bytes(option, device) if loader.holds_device_memory else 0
                span.set_attribute(tm.ATTR_DEVICE, device)
                span.set_attribute(tm.ATTR_REQUIRED, required)
                self._failures.pop(task_type, None)
                self._progress[task_type] = (0.0, "waiting for room")
                self._emit(
                    ModelLoading(
                        task=task_type,
                        option=option.name,
                        model_id=option.model_id,
                        device=device,
                        required_bytes=required,
                    )
                )
                model, measured = await self._load_with_room(
                    task_type, option, loader, device, required
                )
            except BaseException as exc:
                self._load_failed(task_type, option, exc, started, span)
                if isinstance(
                    exc, ModelLoadError | InsufficientMemoryError | asyncio.CancelledError
                ):
                    raise
                raise ModelLoadError(task_type, _reason(exc)) from exc
            finally:
                self._progress.pop(task_type, None)
            duration = time.monotonic() - started
            self._record_loaded(task, option, device, model, measured, duration)
            span.set_attribute(tm.ATTR_BYTES, measured)
            span.set_attribute(tm.ATTR_OUTCOME, "loaded")
            self._load_hist.record(duration, {"outcome": "loaded", "framework": option.framework})
            return model

    async def _load_with_room(
        self, task_type: str, option: ModelConfig, loader: Loader, device: str, required: int
    ) -> tuple[Any, int]:
        if not loader.holds_device_memory:
            ctx = LoadContext(task=task_type, device=device)
            return await self._call_loader(device, loader.load, option, ctx), 0
        async with self._locks[device]:
            reading = await self._make_room(device, required, for_task=task_type)
            self._reserved[device] += required
        try:
            ctx = LoadContext(
                task=task_type,
                device=device,
                device_total_bytes=reading.total,
                progress=lambda fraction, stage: self._report_progress(task_type, fraction, stage),
                output=lambda line: self._emit_threadsafe(ServerOutput(task=task_type, line=line)),
            )
            if inspect.iscoroutinefunction(loader.load):
                model = await loader.load(option, ctx)
                return model, self._own_footprint(loader, model, device, option)
            return await self._in_worker(device, self._measured_load, loader, option, ctx)
        finally:
            self._reserved[device] -= required

    def _report_progress(self, task: str, fraction: float | None, stage: str) -> None:
        self._progress[task] = (fraction, stage)
        self._emit_threadsafe(LoadProgress(task=task, fraction=fraction, stage=stage))

    def _measured_load(
        self, loader: Loader, option: ModelConfig, ctx: LoadContext
    ) -> tuple[Any, int]:
        """Worker: load and measure. The device delta (allocator slack included) is what the
        model took where the probe can attribute it; elsewhere (host RAM) the loader's own count
        of its bytes."""
        prepare = getattr(loader, "prepare", None)
        if prepare is not None:
            prepare(ctx.device)
        attributable = self.probe.attributes_frees(ctx.device)
        before = self._read(ctx.device).used if attributable else 0
        model = loader.load(option, ctx)
        try:
            delta = self._read(ctx.device).used - before if attributable else 0
            own = self._own_footprint(loader, model, ctx.device, option)
        except BaseException:
            loader.unload(model, ctx.device)
            raise
        if getattr(loader, "live_footprint", False):
            return model, own
        # A model takes at least its own tensors; a smaller delta is the driver's page rounding.
        return model, max(delta, own)

    def _own_footprint(self, loader: Loader, model: Any, device: str, option: ModelConfig) -> int:
        own = loader.footprint(model, device)
        return own if own is not None else option.vram_bytes

    async def _call_loader(self, device: str, fn: Callable[..., Any], *args: Any) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        return await self._in_worker(device, fn, *args)

    def _record_loaded(
        self,
        task: TaskConfig,
        option: ModelConfig,
        device: str,
        model: Any,
        measured: int,
        duration: float,
    ) -> None:
        name = task.task_name
        estimated = option.vram_bytes
        self._lru.add(
            Entry(
                name, option.name, option.model_id, device, measured, estimated, pinned=task.pinned
            )
        )
        self.loaded_models[name] = model
        self.loaded_models.move_to_end(name)
        self.model_load_times[name] = time.time()
        self.model_memory_usage[name] = measured
        self._load_durations[name] = duration
        if device != NO_DEVICE:
            self.ledger.record(option, device, measured)
            # Saved by the device's worker, after the load: file I/O stays off the loop.
            self._executor(device).submit(self.ledger.save)
        self._emit(
            ModelLoaded(task=name, option=option.name, model_id=option.model_id, device=device,
                        measured_bytes=measured, estimated_bytes=estimated, duration_s=duration)
        )  # fmt: skip

    def _load_failed(
        self, task: str, option: ModelConfig, exc: BaseException, started: float, span: Span
    ) -> None:
        reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else _reason(exc)
        self._failures[task] = reason
        span.set_attribute(tm.ATTR_OUTCOME, "failed")
        span.set_attribute(tm.ATTR_REASON, reason)
        span.set_status(Status(StatusCode.ERROR, reason))
        duration = time.monotonic() - started
        self._load_hist.record(duration, {"outcome": "failed", "framework": option.framework})
        logger.warning("loading %s (%s) failed: %s", task, option.model_id, reason)
        self._emit(
            LoadFailed(
                task=task,
                option=option.name,
                model_id=option.model_id,
                reason=reason,
                duration_s=duration,
            )
        )

    # ----------------------------------------------------------------- placement and room

    async def _place(self, task: str, option: ModelConfig, loader: Loader) -> str:
        """The device for `option`: as configured, or for ``auto`` the CUDA device with the most
        budget left that can hold it (the host when there is no CUDA device)."""
        if not loader.holds_device_memory:
            return NO_DEVICE
        # The first call detects the probe (NVML start-up can take a while): off the loop.
        devices = self._devices() if self._probe else await asyncio.to_thread(self._devices)
        if option.device != "auto":
            if option.device not in devices:
                raise ModelLoadError(
                    task,
                    f"device {option.device} is not present here (devices: {', '.join(devices)})",
                )
            return option.device
        cuda = [d for d in devices if is_cuda(d)]
        if not cuda:
            return HOST
        readings = await asyncio.to_thread(lambda: {d: self._read(d) for d in cuda})

        def headroom(device: str) -> tuple[bool, int]:
            r = readings[device]
            need = self.required_bytes(option, device)
            free_now = (
                manager_limit(r.total, self.inference_config)
                - self._lru.bytes_on(device)
                - self._reserved[device]
            )
            return (manager_limit(r.total, self.inference_config) >= need, free_now)

        return max(cuda, key=headroom)

    async def _make_room(self, device: str, required: int, *, for_task: str) -> DeviceReading:
        """Evict LRU models on `device` until `required` bytes fit; call with its lock held.

        Returns the reading that showed it fits."""
        while True:
            reading = await asyncio.to_thread(self._read, device)
            own = self._lru.bytes_on(device)
            need = shortfall(
                reading,
                own=own,
                reserved=self._reserved[device],
                required=required,
                inference=self.inference_config,
            )
            if need <= 0:
                return reading
            victims = self._lru.victims(device, need)
            if victims is None:
                raise InsufficientMemoryError(
                    self._no_room_message(device, reading, own, required, need, for_task)
                )
            for victim in victims:
                await self._remove(victim, evicted=True, reason=f"room for {for_task}")

    def _no_room_message(
        self, device: str, r: DeviceReading, own: int, required: int, need: int, task: str
    ) -> str:
        evictable = sum(e.bytes for e in self._lru.on_device(device) if e.evictable)
        budget = self.inference_config.memory_budget_bytes
        return (
            f"{task}: not enough memory on {device} ({r.name}): needs {_gb(required)}, must free "
            f"{_gb(need)} but only {_gb(evictable)} can be evicted; device {_gb(r.used)} used of "
            f"{_gb(r.total)} (limit {_gb(self.inference_config.offload_threshold * r.total)} at "
            f"offload_threshold {self.inference_config.offload_threshold:g}), vramdeck's models "
            f"hold {_gb(own)}"
            + (f" of memory_budget_gb {_gb(budget)}" if budget is not None else "")
        )

    # ----------------------------------------------------------------- unloading

    async def unload_model(self, task_type: str) -> None:
        """Unload the model of `task_type` (no-op when not loaded).

        Raises ModelInUseError while callers hold it through ``use()``.
        """
        await self._unload(task_type, reason="user")

    async def _unload(self, task_type: str, *, reason: str, force: bool = False) -> None:
        self._task(task_type)
        flight = self._loading.get(task_type)
        if flight is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(flight)
        entry = self._lru.get(task_type)
        if entry is None:
            return
        if entry.leases and not force:
            raise ModelInUseError(
                f"{task_type} is in use by {entry.leases} caller(s); unload it when they are done"
            )
        async with self._locks[entry.device]:
            if self._lru.get(task_type) is entry:
                await self._remove(entry, evicted=False, reason=reason)

    async def _remove(self, entry: Entry, *, evicted: bool, reason: str) -> None:
        """Unload `entry`'s model, verify the memory came back, and report; lock held."""
        span_name = tm.SPAN_EVICT if evicted else tm.SPAN_UNLOAD
        attrs: dict[str, str | int] = {
            tm.ATTR_TASK: entry.task,
            tm.ATTR_MODEL_ID: entry.model_id,
            tm.ATTR_DEVICE: entry.device,
            tm.ATTR_BYTES: entry.bytes,
            tm.ATTR_REASON: reason,
        }
        with tm.tracer().start_as_current_span(span_name, attributes=attrs) as span:
            started = time.monotonic()
            self._lru.remove(entry.task)
            model = self.loaded_models.pop(entry.task, None)
            self.model_memory_usage.pop(entry.task, None)
            self.model_load_times.pop(entry.task, None)
            self._load_durations.pop(entry.task, None)
            option = (
                self.tasks[entry.task].options.get(entry.option)
                if entry.task in self.tasks
                else None
            )
            loader = self._loader(option) if option is not None else None
            freed = entry.bytes
            if loader is not None and entry.device != NO_DEVICE:
                freed = await self._unload_and_verify(loader, model, entry)
            elif loader is not None:
                await self._call_loader(entry.device, loader.unload, model, entry.device)
            del model
            duration = time.monotonic() - started
            span.set_attribute(tm.ATTR_OUTCOME, "evicted" if evicted else "unloaded")
            if evicted:
                self._evictions.add(1, {"device": entry.device})
                self._emit(
                    ModelEvicted(
                        task=entry.task,
                        model_id=entry.model_id,
                        device=entry.device,
                        freed_bytes=freed,
                        reason=reason,
                        duration_s=duration,
                    )
                )
            else:
                self._emit(
                    ModelUnloaded(
                        task=entry.task,
                        model_id=entry.model_id,
                        device=entry.device,
                        freed_bytes=freed,
                        reason=reason,
                        duration_s=duration,
                    )
                )

    async def _unload_and_verify(self, loader: Loader, model: Any, entry: Entry) -> int:
        """Unload in the device's worker, then poll until the device shows the memory free.

        Returns the bytes freed: the device's own figure where it can attribute frees, else the
        entry's measured bytes.
        """
        device = entry.device
        attributable = self.probe.attributes_frees(device)

        def unload() -> int:
            before = self._read(device).used if attributable else 0
            loader.unload(model, device)
            return before

        if inspect.iscoroutinefunction(loader.unload):
            before = (await asyncio.to_thread(self._read, device)).used if attributable else 0
            await loader.unload(model, device)
        else:
            before = await self._in_worker(device, unload)
        if not attributable:
            return entry.bytes
        expected = int(entry.bytes * RETURNED_SHARE)
        deadline = time.monotonic() + self.inference_config.evict_verify_timeout_s
        pause = 0.005  # a driver usually shows the memory free within tens of ms: look often
        while True:
            returned = before - (await asyncio.to_thread(self._read, device)).used
            if returned >= expected or time.monotonic() >= deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
        if returned < expected:
            logger.warning(
                "suspected leak: %s on %s freed %s of %s",
                entry.task,
                device,
                _gb(returned),
                _gb(entry.bytes),
            )
            self._emit(
                MemoryNotReturned(
                    task=entry.task,
                    device=device,
                    expected_bytes=entry.bytes,
                    returned_bytes=max(0, returned),
                )
            )
        return max(0, returned)

    # ----------------------------------------------------------------- selection and pins

    async def set_selected_model(self, task_type: str, model_name: str) -> None:
        """Select `model_name` for `task_type`; a loaded task switches to the new model.

        If the new model fails to load, the old selection is restored (and reloaded) and the
        error is raised. Raises ValueError naming the valid options for a wrong name.
        """
        task = self._task(task_type)
        if model_name not in task.options:
            raise ValueError(
                f"{task_type} has no option {model_name!r}; options: {', '.join(task.options)}"
            )
        old = task.selected
        if model_name == old:
            return
        flight = self._loading.get(task_type)
        if flight is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(flight)
        was_loaded = task_type in self._lru
        if was_loaded:
            await self._unload(task_type, reason="switch")
        self._select(task, model_name)
        if not was_loaded:
            return
        try:
            await self.load_model(task_type)
        except BaseException:
            self._select(task, old)
            with contextlib.suppress(Exception):
                await self.load_model(task_type)
            raise

    def _select(self, task: TaskConfig, name: str) -> None:
        old, task.selected = task.selected, name
        models = self.config.get("models")
        if isinstance(models, dict) and isinstance(models.get(task.task_name), dict):
            models[task.task_name]["selected"] = name
        self._emit(SelectionChanged(task=task.task_name, old=old, new=name))

    def set_pinned(self, task_type: str, pinned: bool) -> None:
        """Pin a task's model (never evicted, though it can still be unloaded) or unpin it."""
        task = self._task(task_type)
        task.pinned = pinned
        entry = self._lru.get(task_type)
        if entry is not None:
            entry.pinned = pinned
        self._emit(PinChanged(task=task_type, pinned=pinned))

    # ----------------------------------------------------------------- information (seed)

    def get_loaded_models(self) -> dict[str, dict[str, Any]]:
        """task → model_id, memory_usage_gb (measured), estimated_gb, device, load_time, …"""
        info: dict[str, dict[str, Any]] = {}
        for entry in self._lru:
            info[entry.task] = {
                "model_id": entry.model_id,
                "option": entry.option,
                "device": entry.device,
                "memory_usage_gb": entry.bytes / GIB,
                "measured_bytes": entry.bytes,
                "estimated_gb": entry.estimated_bytes / GIB,
                "load_time": self.model_load_times.get(entry.task),
                "load_duration_s": self._load_durations.get(entry.task),
                "idle_s": time.monotonic() - entry.last_used,
                "pinned": entry.pinned,
                "in_use": entry.leases,
            }
        return info

    def get_model_config(self, task_type: str) -> TaskConfig | None:
        """The configuration of `task_type`, or None if there is no such task."""
        return self.tasks.get(task_type)

    def task_state(self, task_type: str) -> str:
        """One of: loading, in use, loaded, failed, unloaded, unavailable."""
        task = self._task(task_type)
        entry = self._lru.get(task_type)
        if task_type in self._loading:
            return "loading"
        if entry is not None:
            return "in use" if entry.leases else "loaded"
        if task_type in self._failures:
            return "failed"
        return "unavailable" if task.get_selected_config().unavailable_reason else "unloaded"

    def failure_reason(self, task_type: str) -> str | None:
        """Why the last load of `task_type` failed, until it loads again."""
        return self._failures.get(task_type)

    def load_progress(self, task_type: str) -> tuple[float | None, str] | None:
        """(fraction, stage) of a load in flight, or None."""
        return self._progress.get(task_type)

    def device_readings(self) -> dict[str, DeviceReading]:
        """A fresh reading of every device (blocks briefly: call it off the GUI thread)."""
        return {d: self._read(d) for d in self._devices()}

    def budget_bytes(self, device: str, total: int) -> int:
        """What the manager's models may hold on `device` of `total` bytes."""
        return manager_limit(total, self.inference_config)

    def validate_memory_budget(self) -> dict[str, Any]:
        """Whether the selected models of all tasks fit their devices' budgets together.

        Returns the seed's keys (valid, total_vram_gb, total_required_gb, threshold,
        max_allowed_gb, model_requirements) and ``devices``: the plan per device.
        """
        readings = self.device_readings()
        cuda = {d: r for d, r in readings.items() if is_cuda(d)}
        pool = cuda or {HOST: readings[HOST]}
        requirements: dict[str, tuple[str, int]] = {}
        model_requirements: dict[str, dict[str, Any]] = {}
        for name, task in self.tasks.items():
            option = task.get_selected_config()
            device = option.device if option.device != "auto" else next(iter(pool))
            need = 0 if option.is_external else self.required_bytes(option, device)
            model_requirements[name] = {
                "model_id": option.model_id,
                "option": option.name,
                "vram_gb": need / GIB,
                "estimated_gb": option.vram_gb,
                "measured": self.ledger.measured_bytes(option, device) is not None,
                "external": option.is_external,
            }
            if not option.is_external:
                requirements[name] = (option.device, need)
        fixed = {device for device, _ in requirements.values()} & readings.keys()
        plans = plan_placement(
            requirements, {**pool, **{d: readings[d] for d in fixed}}, self.inference_config
        )
        total = sum(r.total for r in pool.values())
        max_allowed = sum(p.budget for d, p in plans.items() if d in pool)
        required = sum(v[1] for v in requirements.values())
        return {
            "valid": all(p.fits for p in plans.values()),
            "total_vram_gb": total / GIB,
            "total_required_gb": required / GIB,
            "threshold": self.inference_config.offload_threshold,
            "max_allowed_gb": max_allowed / GIB,
            "memory_budget_gb": self.inference_config.memory_budget_gb,
            "model_requirements": model_requirements,
            "devices": {d: p.as_dict() for d, p in plans.items()},
        }

    def is_external_api(self, task_type: str) -> bool:
        """Whether `task_type`'s selected model is an external API. ValueError if no such task."""
        return self._task(task_type).get_selected_config().is_external

    def get_external_api_config(self, task_type: str) -> ExternalAPIConfig:
        """The external API client config of `task_type` (the key stays in the environment)."""
        option = self._task(task_type).get_selected_config()
        if not option.is_external:
            raise ValueError(f"{task_type} uses {option.framework}, not an external API")
        return external_api_config(option)

    # ----------------------------------------------------------------- lifecycle

    async def warmup_models(self, *, force: bool = False) -> None:
        """Load every selected model, in config order, if warmup_on_startup is set (or `force`).

        A model that fails is reported (LoadFailed) and the others still load.
        """
        if not (force or self.inference_config.warmup_on_startup):
            return
        for name, task in self.tasks.items():
            if task.get_selected_config().unavailable_reason:
                continue
            try:
                await self.load_model(name)
            except (ValueError, RuntimeError) as exc:
                logger.warning("warm-up of %s failed: %s", name, exc)

    async def reload_config(self, path: str | os.PathLike[str] | None = None) -> None:
        """Read the config again (or another one). On error the current config stays in force.

        Models whose task and option still exist stay loaded; the others are unloaded.
        """
        loaded = load_config(path or self.config_path)
        for entry in list(self._lru):
            task = loaded.tasks.get(entry.task)
            if task is None or task.selected != entry.option:
                await self._unload(entry.task, reason="config reloaded", force=True)
        self.config_path, self.config = loaded.path, loaded.raw
        self.tasks, self.inference_config = loaded.tasks, loaded.inference
        self._mark_availability()
        for entry in self._lru:
            entry.pinned = self.tasks[entry.task].pinned
        self._failures.clear()
        self._emit(ConfigReloaded(path=str(loaded.path)))

    async def unload_all(self, *, reason: str = "user") -> None:
        """Unload every loaded model, pinned ones too, waiting for loads in flight."""
        for flight in list(self._loading.values()):
            with contextlib.suppress(BaseException):
                await asyncio.shield(flight)
        for entry in list(self._lru):
            await self._unload(entry.task, reason=reason, force=True)

    async def check_health(self) -> None:
        """Notice models whose process died, and unload idle ones (the housekeeper calls this)."""
        for entry in list(self._lru):
            model = self.loaded_models.get(entry.task)
            option = (
                self.tasks[entry.task].options.get(entry.option)
                if entry.task in self.tasks
                else None
            )
            if option is None or model is None:
                continue
            loader = self._loader(option)
            died = loader.check(model)
            if died is not None:
                await self._crashed(entry, loader, model, died)
            elif getattr(loader, "live_footprint", False):
                own = await asyncio.to_thread(loader.footprint, model, entry.device)
                if own is not None and self._lru.get(entry.task) is entry:
                    entry.bytes = self.model_memory_usage[entry.task] = own
        idle_s = self.inference_config.idle_unload_s
        if idle_s is None:
            return
        now = time.monotonic()
        for entry in list(self._lru):
            if entry.evictable and now - entry.last_used >= idle_s:
                with contextlib.suppress(ModelInUseError):
                    await self._unload(entry.task, reason=f"idle for {idle_s:g} s")

    async def _crashed(
        self, entry: Entry, loader: Loader, model: Any, died: tuple[int | None, tuple[str, ...]]
    ) -> None:
        async with self._locks[entry.device]:
            if self._lru.get(entry.task) is not entry:
                return
            self._lru.remove(entry.task)
            self.loaded_models.pop(entry.task, None)
            self.model_memory_usage.pop(entry.task, None)
            self.model_load_times.pop(entry.task, None)
            with contextlib.suppress(Exception):
                await self._call_loader(entry.device, loader.unload, model, entry.device)
        code, lines = died
        self._failures[entry.task] = f"crashed with exit code {code}"
        self._emit(
            ModelCrashed(
                task=entry.task,
                model_id=entry.model_id,
                device=entry.device,
                exit_code=code,
                last_output=tuple(lines),
            )
        )

    def start_monitor(self, interval_s: float = 0.1) -> None:
        """Sample every device every `interval_s` and emit MemorySampled (needs a running loop)."""
        self._started()
        self.monitor.start(interval_s)

    def sample(self, readings: Mapping[str, DeviceReading]) -> None:
        """Emit one MemorySampled per device from `readings` (the monitor calls this)."""
        for device, r in readings.items():
            per_task = {e.task: e.bytes for e in self._lru.on_device(device)}
            self._emit(
                MemorySampled(device=device, used_bytes=r.used, total_bytes=r.total,
                              budget_bytes=manager_limit(r.total, self.inference_config),
                              manager_bytes=sum(per_task.values()), per_task=per_task)
            )  # fmt: skip

    async def shutdown(self) -> None:
        """Unload all models and release the workers, the monitor and device handles."""
        if self._closed:
            return
        await self.monitor.stop()
        await self._housekeeper.stop()
        await self.unload_all(reason="shutdown")
        self._closed = True
        for executor in self._executors.values():
            executor.shutdown(wait=True)
        self._executors.clear()
        if self._probe is not None:
            self._probe.close()

    def __repr__(self) -> str:
        loaded = list(self.loaded_models)
        return f"ModelManager({str(self.config_path)!r}, tasks={len(self.tasks)}, loaded={loaded})"


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "OutOfMemory" in name:
        return f"out of memory: {text}" if text else "out of memory"
    return f"{name}: {text}" if text else name


__all__ = ["NO_DEVICE", "ModelManager"]
