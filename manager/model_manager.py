"""ModelManager: loads models on demand, keeps every device under its budget, evicts by LRU.

The API keeps every name of the original ``model_manager`` document (seed), sync or async as it
lists them. Blocking work runs in one named worker thread per device, so the event loop never
waits on a load and a device's memory delta around a load belongs to that load. Events are
emitted on the loop's thread only.

Concurrency rules, each kept in one place:
- one load per task at a time (``_flight``); callers share it, shielded from their cancellation;
- a switch of a task's option holds that task's switch lock, and new loads of the task wait for
  it, so the loaded model always matches the selection;
- eviction decisions and unloads on a device hold that device's lock, and re-check inside it
  that the entry is still loaded and may go.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import metrics
from opentelemetry.trace import Span, Status, StatusCode

from . import telemetry as tm
from .budget import device_limit, manager_limit, plan_placement, shortfall
from .config import GIB, InferenceConfig, ModelConfig, TaskConfig, load_config
from .devices import DevicePool, Reservation
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
from .memory import HOST, DeviceReading, MemoryProbe, is_cuda
from .monitor import Housekeeper, MemoryMonitor

logger = logging.getLogger(__name__)

#: The pseudo-device of models that hold no local memory (external APIs).
NO_DEVICE = "none"
#: A freed model counts as returned once the device shows this share of its bytes free again.
RETURNED_SHARE = 0.9
#: How often `use()` reloads a model that others keep evicting before it gives up.
USE_ATTEMPTS = 3


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
        self.devices = DevicePool(probe)
        self.monitor = MemoryMonitor(self)
        self._housekeeper = Housekeeper(self)
        self._lru = LruTable()
        self._loading: dict[str, asyncio.Task[Any]] = {}
        self._switch_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failures: dict[tuple[str, str], str] = {}  # (task, option) → why it failed
        self._progress: dict[str, tuple[float | None, str]] = {}
        self._last_samples: dict[str, MemorySampled] = {}
        self._load_durations: dict[str, float] = {}
        self._closing = False
        self._mark_availability()
        self._init_metrics()

    # ----------------------------------------------------------------- set-up and helpers

    @property
    def probe(self) -> MemoryProbe:
        """The memory probe; detected on first use (NVML, else torch, plus host RAM)."""
        return self.devices.probe

    def _mark_availability(self) -> None:
        for task in self.tasks.values():
            for option in task.options.values():
                option.unavailable_reason = option.unset_variables_reason() or (
                    self.registry.unavailable_reason(option)
                )

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

    def _call_on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn` on the loop's thread: now when called there, else soon (from a worker)."""
        loop = self._loop
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

    def _started(self) -> None:
        if self._closing:
            raise RuntimeError("the manager was shut down")
        self._loop = asyncio.get_running_loop()
        self._housekeeper.ensure_running()

    def _loader(self, option: ModelConfig) -> Loader:
        return self.registry.get(option.framework)

    def required_bytes(self, option: ModelConfig, device: str) -> int:
        """What `option` will take on `device`: the ledger's measured figure, else the estimate."""
        measured = self.ledger.measured_bytes(option, device)
        return measured if measured is not None else option.vram_bytes

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
        """Whether some device could take `required_bytes` now, within budget, without evicting."""
        return any(
            self._shortfall(r.device, r, required_bytes) <= 0 for r in self._primary_readings()
        )

    def _shortfall(self, device: str, reading: DeviceReading, required: int) -> int:
        return shortfall(
            reading,
            own=self._lru.bytes_on(device),
            required=required,
            inference=self.inference_config,
            pending_on_device=self.devices.outstanding(device, reading.used),
            pending_in_budget=self.devices.reserved(device),
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
        removed = await self._unload_entry(
            entry, evicted=True, reason="evict_lru_model requested", force=False
        )
        return entry.task if removed else None

    # ----------------------------------------------------------------- loading (seed)

    async def load_model(self, task_type: str) -> Any:
        """Load the selected model of `task_type`, evicting LRU models to make room.

        Concurrent calls for one task share one load. Raises ValueError for an unknown task or a
        model that cannot load (ModelLoadError), RuntimeError (InsufficientMemoryError) when even
        evicting every candidate would not make room.
        """
        self._task(task_type)
        self._started()
        switching = self._switch_locks[task_type]
        while switching.locked():  # a switch in progress decides which model this gets
            async with switching:
                pass
        if task_type in self._lru:
            self._touch(task_type)
            return self.loaded_models[task_type]
        return await asyncio.shield(self._flight(task_type))

    def _flight(self, task_type: str) -> asyncio.Task[Any]:
        """The load in flight for `task_type`, started if there is none."""
        flight = self._loading.get(task_type)
        if flight is None:
            flight = asyncio.ensure_future(self._load(task_type))
            self._loading[task_type] = flight
            # Retrieve the outcome even when every caller was cancelled: it was reported already.
            flight.add_done_callback(lambda f: f.cancelled() or f.exception())
            flight.add_done_callback(lambda f: self._landed(task_type, f))
        return flight

    def _landed(self, task_type: str, flight: object) -> None:
        """The load `flight` of `task_type` is over: not in flight, before its outcome is
        reported, so that subscribers asking `task_state` see the outcome."""
        if self._loading.get(task_type) is flight:
            del self._loading[task_type]
        self._progress.pop(task_type, None)

    async def _settle(self, task_type: str) -> None:
        """Wait until no load of `task_type` is in flight, whatever its outcome."""
        while (flight := self._loading.get(task_type)) is not None:
            await asyncio.wait([flight])

    async def get_model(self, task_type: str) -> Any:
        """Get the model for `task_type`, loading it if necessary."""
        return await self.load_model(task_type)

    @contextlib.asynccontextmanager
    async def use(self, task_type: str) -> AsyncIterator[Any]:
        """Hold a task's model: it is loaded if needed and never evicted until the block ends."""
        for _ in range(USE_ATTEMPTS):
            model = await self.load_model(task_type)
            entry = self._lru.get(task_type)
            # Others may have evicted it between the load and this line: take it only if not.
            if entry is not None and self.loaded_models.get(task_type) is model:
                break
        else:
            raise InsufficientMemoryError(
                f"{task_type}: evicted again {USE_ATTEMPTS} times before it could be held"
            )
        entry.leases += 1
        try:
            yield model
        finally:
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
            try:
                if option.unavailable_reason:
                    reason = f"{option.name} cannot load here: {option.unavailable_reason}"
                    raise ModelLoadError(task_type, reason)
                loader = self._loader(option)
                device = await self._place(task_type, option, loader)
                required = self.required_bytes(option, device) if loader.holds_device_memory else 0
                span.set_attribute(tm.ATTR_DEVICE, device)
                span.set_attribute(tm.ATTR_REQUIRED, required)
                self._failures.pop((task_type, option.name), None)
                self._progress[task_type] = (0.0, "waiting for room")
                self._emit(
                    ModelLoading(task=task_type, option=option.name, model_id=option.model_id,
                                 device=device, required_bytes=required)
                )  # fmt: skip
                model, measured = await self._load_with_room(
                    task_type, option, loader, device, required
                )
            except BaseException as exc:
                self._landed(task_type, asyncio.current_task())
                self._load_failed(task_type, option, exc, started, span)
                if not isinstance(exc, Exception) or isinstance(
                    exc, ModelLoadError | InsufficientMemoryError
                ):
                    raise
                raise ModelLoadError(task_type, _reason(exc)) from exc
            duration = time.monotonic() - started
            self._landed(task_type, asyncio.current_task())
            self._record_loaded(task, option, loader, device, model, measured, duration)
            span.set_attribute(tm.ATTR_BYTES, measured)
            span.set_attribute(tm.ATTR_OUTCOME, "loaded")
            self._load_hist.record(duration, {"outcome": "loaded", "framework": option.framework})
            return model

    async def _load_with_room(
        self, task_type: str, option: ModelConfig, loader: Loader, device: str, required: int
    ) -> tuple[Any, int]:
        if not loader.holds_device_memory:
            ctx = self._load_context(task_type, device, total_bytes=0)
            return await self._call_loader(NO_DEVICE, loader.load, option, ctx), 0
        async with self.devices.lock(device):
            reading = await self._make_room(device, required, for_task=task_type)
            reservation = self.devices.reserve(device, required)
        ctx = self._load_context(task_type, device, total_bytes=reading.total)
        try:
            if inspect.iscoroutinefunction(loader.load):
                if self.probe.attributes_frees(device):
                    reservation.started_used = (await self.devices.read_async(device)).used
                model = await loader.load(option, ctx)
                return model, self._own_footprint(loader, model, device, option)
            return await self._load_in_worker(loader, option, ctx, reservation)
        finally:
            self.devices.release(reservation)

    def _load_context(self, task: str, device: str, *, total_bytes: int) -> LoadContext:
        """What a loader gets: its callbacks turn into events on the loop's thread."""
        return LoadContext(
            task=task,
            device=device,
            probe=self.probe,
            device_total_bytes=total_bytes,
            progress=lambda fraction, stage: self._call_on_loop(
                self._on_progress, task, fraction, stage
            ),
            output=lambda line: self._call_on_loop(self._emit, ServerOutput(task=task, line=line)),
        )

    async def _load_in_worker(
        self, loader: Loader, option: ModelConfig, ctx: LoadContext, reservation: Reservation
    ) -> tuple[Any, int]:
        work = self.devices.submit(
            ctx.device, self._measured_load, loader, option, ctx, reservation
        )
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            # The worker cannot be stopped mid-load: give back what it loads once it is done.
            def release_late(done: Any) -> None:
                if not done.cancelled() and done.exception() is None:
                    loader.unload(done.result()[0], ctx.device)

            work.add_done_callback(release_late)
            raise

    def _on_progress(self, task: str, fraction: float | None, stage: str) -> None:
        if task in self._loading:  # a late report from a finished load changes nothing
            self._progress[task] = (fraction, stage)
            self._emit(LoadProgress(task=task, fraction=fraction, stage=stage))

    def _measured_load(
        self, loader: Loader, option: ModelConfig, ctx: LoadContext, reservation: Reservation
    ) -> tuple[Any, int]:
        """Worker: load and measure. The device delta (allocator slack included) is what the
        model took where the probe can attribute it; elsewhere (host RAM) the loader's own count
        of its bytes."""
        prepare = getattr(loader, "prepare", None)
        if prepare is not None:
            prepare(ctx.device)
        attributable = self.probe.attributes_frees(ctx.device)
        before = self.devices.read(ctx.device).used if attributable else 0
        if attributable:
            reservation.started_used = before
        model = loader.load(option, ctx)
        try:
            delta = self.devices.read(ctx.device).used - before if attributable else 0
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

    def _record_loaded(
        self,
        task: TaskConfig,
        option: ModelConfig,
        loader: Loader,
        device: str,
        model: Any,
        measured: int,
        duration: float,
    ) -> None:
        name = task.task_name
        entry = Entry(name, option.name, option.model_id, device, measured, option.vram_bytes,
                      config=option, loader=loader, pinned=task.pinned)  # fmt: skip
        self._lru.add(entry)
        self.loaded_models[name] = model
        self.loaded_models.move_to_end(name)
        self.model_load_times[name] = time.time()
        self.model_memory_usage[name] = measured
        self._load_durations[name] = duration
        if device != NO_DEVICE:
            self.ledger.record(option, device, measured)
            # Saved by the device's worker, after the load: file I/O stays off the loop.
            self.devices.submit(device, self.ledger.save)
        self._emit(
            ModelLoaded(task=name, option=option.name, model_id=option.model_id, device=device,
                        measured_bytes=measured, estimated_bytes=option.vram_bytes,
                        duration_s=duration)
        )  # fmt: skip

    def _load_failed(
        self, task: str, option: ModelConfig, exc: BaseException, started: float, span: Span
    ) -> None:
        reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else _reason(exc)
        self._failures[(task, option.name)] = reason
        span.set_attribute(tm.ATTR_OUTCOME, "failed")
        span.set_attribute(tm.ATTR_REASON, reason)
        span.set_status(Status(StatusCode.ERROR, reason))
        duration = time.monotonic() - started
        self._load_hist.record(duration, {"outcome": "failed", "framework": option.framework})
        logger.warning("loading %s (%s) failed: %s", task, option.model_id, reason)
        self._emit(
            LoadFailed(task=task, option=option.name, model_id=option.model_id, reason=reason,
                       duration_s=duration)
        )  # fmt: skip

    # ----------------------------------------------------------------- placement and room

    async def _place(self, task: str, option: ModelConfig, loader: Loader) -> str:
        """The device for `option`: as configured, or for ``auto`` the CUDA device where it fits
        best, counting what every process holds (the host when there is no CUDA device)."""
        if not loader.holds_device_memory:
            return NO_DEVICE
        devices = await self.devices.names_async()
        if option.device != "auto":
            if option.device not in devices:
                present = ", ".join(devices)
                raise ModelLoadError(
                    task, f"device {option.device} is not present here (devices: {present})"
                )
            return option.device
        cuda = [d for d in devices if is_cuda(d)]
        if not cuda:
            return HOST
        readings = await asyncio.to_thread(lambda: {d: self.devices.read(d) for d in cuda})

        def fit(device: str) -> tuple[bool, int]:
            need = self.required_bytes(option, device)
            could_ever = manager_limit(readings[device].total, self.inference_config) >= need
            return could_ever, -self._shortfall(device, readings[device], need)

        return max(cuda, key=fit)

    async def _make_room(self, device: str, required: int, *, for_task: str) -> DeviceReading:
        """Evict LRU models on `device` until `required` bytes fit; call with its lock held.

        Returns the reading that showed it fits. Raises InsufficientMemoryError, having evicted
        nothing, when even every candidate would not make room; or, having evicted some, when
        the device did not show an evicted model's memory free.
        """
        evicted: list[str] = []
        while True:
            reading = await self.devices.read_async(device)
            need = self._shortfall(device, reading, required)
            if need <= 0:
                return reading
            victims = self._lru.victims(device, need)
            if victims is None:
                raise InsufficientMemoryError(
                    self._no_room_message(device, reading, required, need, for_task, evicted)
                )
            for victim in victims:
                if self._lru.get(victim.task) is not victim or not victim.evictable:
                    break  # held or gone meanwhile: choose again from a fresh reading
                returned = await self._remove(victim, evicted=True, reason=f"room for {for_task}")
                evicted.append(victim.task)
                if not returned:
                    raise InsufficientMemoryError(
                        f"{for_task}: evicted {', '.join(evicted)} from {device}, but the device "
                        f"did not show {victim.task}'s {_gb(victim.bytes)} free again"
                    )

    def _no_room_message(
        self, device: str, r: DeviceReading, required: int, need: int, task: str, evicted: list[str]
    ) -> str:
        evictable = sum(e.bytes for e in self._lru.on_device(device) if e.evictable)
        budget = self.inference_config.memory_budget_bytes
        threshold = self.inference_config.offload_threshold
        message = (
            f"{task}: not enough memory on {device} ({r.name}): needs {_gb(required)}, must free "
            f"{_gb(need)} but only {_gb(evictable)} can be evicted; device {_gb(r.used)} used of "
            f"{_gb(r.total)} (limit {_gb(threshold * r.total)} at offload_threshold "
            f"{threshold:g}), vramdeck's models hold {_gb(self._lru.bytes_on(device))}"
        )
        if budget is not None:
            message += f" of memory_budget_gb {_gb(budget)}"
        if evicted:
            message += f"; already evicted for it: {', '.join(evicted)}"
        return message

    # ----------------------------------------------------------------- unloading

    async def unload_model(self, task_type: str) -> None:
        """Unload the model of `task_type` (no-op when not loaded).

        Raises ModelInUseError while callers hold it through ``use()``.
        """
        self._task(task_type)
        await self._unload_task(task_type, reason="user")

    async def _unload_task(self, task_type: str, *, reason: str, force: bool = False) -> None:
        await self._settle(task_type)
        entry = self._lru.get(task_type)
        if entry is not None:
            await self._unload_entry(entry, evicted=False, reason=reason, force=force)

    async def _unload_entry(self, entry: Entry, *, evicted: bool, reason: str, force: bool) -> bool:
        """Remove `entry` if it is still loaded (and, unless `force`, not held); device lock
        taken here. Returns whether it was removed."""
        async with self.devices.lock(entry.device):
            if self._lru.get(entry.task) is not entry:
                return False
            if entry.leases and not force:
                if evicted:
                    return False
                raise ModelInUseError(
                    f"{entry.task} is in use by {entry.leases} caller(s); unload it when they "
                    "are done"
                )
            await self._remove(entry, evicted=evicted, reason=reason)
            return True

    def _forget(self, entry: Entry) -> Any:
        """Drop `entry` from every table; returns its model."""
        self._lru.remove(entry.task)
        self.model_memory_usage.pop(entry.task, None)
        self.model_load_times.pop(entry.task, None)
        self._load_durations.pop(entry.task, None)
        return self.loaded_models.pop(entry.task, None)

    async def _remove(self, entry: Entry, *, evicted: bool, reason: str) -> bool:
        """Unload `entry`'s model, verify the memory came back, and report; lock held.

        Returns False when the device did not show the memory free again. A loader that fails
        to unload is logged and reported in the event's reason; the entry is gone either way.
        """
        attrs: dict[str, str | int] = {
            tm.ATTR_TASK: entry.task,
            tm.ATTR_MODEL_ID: entry.model_id,
            tm.ATTR_DEVICE: entry.device,
            tm.ATTR_BYTES: entry.bytes,
            tm.ATTR_REASON: reason,
        }
        span_name = tm.SPAN_EVICT if evicted else tm.SPAN_UNLOAD
        with tm.tracer().start_as_current_span(span_name, attributes=attrs) as span:
            started = time.monotonic()
            model = self._forget(entry)
            try:
                freed, returned = await self._unload_and_verify(entry, model)
            except Exception as exc:
                logger.exception("unloading %s (%s) failed", entry.task, entry.model_id)
                reason = f"{reason}; the unload failed: {_reason(exc)}"
                span.set_status(Status(StatusCode.ERROR, reason))
                freed, returned = 0, False
            del model
            span.set_attribute(tm.ATTR_OUTCOME, "evicted" if evicted else "unloaded")
            if evicted:
                self._evictions.add(1, {"device": entry.device})
            kind = ModelEvicted if evicted else ModelUnloaded
            self._emit(
                kind(task=entry.task, option=entry.option, model_id=entry.model_id,
                     device=entry.device, freed_bytes=freed, reason=reason,
                     duration_s=time.monotonic() - started)
            )  # fmt: skip
            return returned

    async def _unload_and_verify(self, entry: Entry, model: Any) -> tuple[int, bool]:
        """Unload in the device's worker (or on the loop for async loaders), then poll until the
        device shows the memory free. Returns (bytes freed, whether they came back): the device's
        own figure where it can attribute frees, else the entry's measured bytes."""
        device, loader = entry.device, entry.loader
        if device == NO_DEVICE:
            await self._call_loader(device, loader.unload, model, device)
            return entry.bytes, True
        attributable = self.probe.attributes_frees(device)

        def read_then_unload() -> int:
            before = self.devices.read(device).used if attributable else 0
            loader.unload(model, device)
            return before

        if inspect.iscoroutinefunction(loader.unload):
            before = (await self.devices.read_async(device)).used if attributable else 0
            await loader.unload(model, device)
        else:
            before = await self.devices.run(device, read_then_unload)
        if not attributable:
            return entry.bytes, True
        returned = await self._await_returned(entry, before)
        if returned < RETURNED_SHARE * entry.bytes:
            logger.warning(
                "suspected leak: %s on %s freed %s of %s",
                entry.task, device, _gb(returned), _gb(entry.bytes),
            )  # fmt: skip
            self._emit(
                MemoryNotReturned(task=entry.task, device=device, expected_bytes=entry.bytes,
                                  returned_bytes=max(0, returned))
            )  # fmt: skip
            return max(0, returned), False
        return returned, True

    async def _await_returned(self, entry: Entry, before: int) -> int:
        """Bytes the device shows free since `before`, polled until they reach the expected
        share or the timeout passes (a driver can take tens of ms to show a free)."""
        deadline = time.monotonic() + self.inference_config.evict_verify_timeout_s
        pause = 0.005
        while True:
            returned = before - (await self.devices.read_async(entry.device)).used
            if returned >= RETURNED_SHARE * entry.bytes or time.monotonic() >= deadline:
                return returned
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def _call_loader(self, device: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Await an async loader method on the loop; run a blocking one in `device`'s worker
        (in a plain thread for models that hold no device memory)."""
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        if device == NO_DEVICE:
            return await asyncio.to_thread(fn, *args)
        return await self.devices.run(device, fn, *args)

    # ----------------------------------------------------------------- selection and pins

    async def set_selected_model(self, task_type: str, model_name: str) -> None:
        """Select `model_name` for `task_type`; a loaded task switches to the new model.

        If the new model fails to load, the old selection is restored (and reloaded) and the
        error is raised. A cancelled caller does not cancel a switch half-way. Raises
        ValueError naming the valid options for a wrong name.
        """
        task = self._task(task_type)
        if model_name not in task.options:
            options = ", ".join(task.options)
            raise ValueError(f"{task_type} has no option {model_name!r}; options: {options}")
        self._started()
        await asyncio.shield(asyncio.ensure_future(self._switch(task, model_name)))

    async def _switch(self, task: TaskConfig, model_name: str) -> None:
        async with self._switch_locks[task.task_name]:
            old = task.selected
            if model_name == old:
                return
            await self._settle(task.task_name)
            was_loaded = task.task_name in self._lru
            if was_loaded:
                await self._unload_task(task.task_name, reason="switch")
            self._select(task, model_name)
            if not was_loaded:
                return
            try:
                await asyncio.shield(self._flight(task.task_name))
            except Exception:
                self._select(task, old)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._flight(task.task_name))
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
        if self.failure_reason(task_type) is not None:
            return "failed"
        return "unavailable" if task.get_selected_config().unavailable_reason else "unloaded"

    def failure_reason(self, task_type: str) -> str | None:
        """Why the last load of `task_type`'s selected option failed, until it loads again."""
        return self._failures.get((task_type, self._task(task_type).selected))

    def load_progress(self, task_type: str) -> tuple[float | None, str] | None:
        """(fraction, stage) of a load in flight, or None."""
        return self._progress.get(task_type)

    def device_readings(self) -> dict[str, DeviceReading]:
        """A fresh reading of every device (blocks briefly: call it off the GUI thread)."""
        return {d: self.devices.read(d) for d in self.devices.names()}

    def budget_bytes(self, device: str, total: int) -> int:
        """What the manager's models may hold on a device of `total` bytes."""
        return manager_limit(total, self.inference_config)

    def validate_memory_budget(
        self, *, readings: Mapping[str, DeviceReading] | None = None
    ) -> dict[str, Any]:
        """Whether the selected models of all tasks fit their devices' budgets together.

        Returns the seed's keys (valid, total_vram_gb, total_required_gb, threshold,
        max_allowed_gb, model_requirements) and ``devices``: the plan per device. Pass
        `readings` (from `device_readings()`, read off the loop) to read no device here.
        """
        readings = readings if readings is not None else self.device_readings()
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
        return {
            "valid": all(p.fits for p in plans.values()),
            "total_vram_gb": sum(r.total for r in pool.values()) / GIB,
            "total_required_gb": sum(need for _, need in requirements.values()) / GIB,
            "threshold": self.inference_config.offload_threshold,
            "max_allowed_gb": sum(p.budget for d, p in plans.items() if d in pool) / GIB,
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

        Models whose task still selects an option that loads the same way stay loaded; the
        others are unloaded. Loads in flight finish first.
        """
        loaded = load_config(path or self.config_path)
        await self._drain_loads()
        for entry in list(self._lru):
            task = loaded.tasks.get(entry.task)
            option = task.options.get(entry.option) if task else None
            keep = (
                task is not None
                and option is not None
                and task.selected == entry.option
                and option.load_signature() == entry.config.load_signature()
            )
            if not keep:
                await self._unload_task(entry.task, reason="config reloaded", force=True)
        self.config_path, self.config = loaded.path, loaded.raw
        self.tasks, self.inference_config = loaded.tasks, loaded.inference
        self._mark_availability()
        for entry in self._lru:
            entry.pinned = self.tasks[entry.task].pinned
            entry.config = self.tasks[entry.task].options[entry.option]
        self._failures.clear()
        self._emit(ConfigReloaded(path=str(loaded.path)))

    async def _drain_loads(self) -> None:
        while self._loading:
            await asyncio.wait(list(self._loading.values()))

    async def unload_all(self, *, reason: str = "user") -> None:
        """Unload every loaded model, pinned and held ones too, after loads in flight finish."""
        await self._drain_loads()
        for entry in list(self._lru):
            await self._unload_entry(entry, evicted=False, reason=reason, force=True)

    async def check_health(self) -> None:
        """Notice models whose process died, and unload idle ones (the housekeeper calls this)."""
        for entry in list(self._lru):
            model = self.loaded_models.get(entry.task)
            if self._lru.get(entry.task) is not entry or model is None:
                continue
            died = entry.loader.check(model)
            if died is not None:
                await self._crashed(entry, model, died)
            elif getattr(entry.loader, "live_footprint", False):
                own = await asyncio.to_thread(entry.loader.footprint, model, entry.device)
                if own is not None and self._lru.get(entry.task) is entry:
                    entry.bytes = self.model_memory_usage[entry.task] = own
        idle_s = self.inference_config.idle_unload_s
        if idle_s is None:
            return
        for entry in list(self._lru):
            if entry.evictable and time.monotonic() - entry.last_used >= idle_s:
                with contextlib.suppress(ModelInUseError):
                    await self._unload_entry(
                        entry, evicted=False, reason=f"idle for {idle_s:g} s", force=False
                    )

    async def _crashed(
        self, entry: Entry, model: Any, died: tuple[int | None, tuple[str, ...]]
    ) -> None:
        async with self.devices.lock(entry.device):
            if self._lru.get(entry.task) is not entry:
                return
            self._forget(entry)
            try:
                await self._call_loader(entry.device, entry.loader.unload, model, entry.device)
            except Exception:
                logger.exception("cleaning up after %s crashed failed", entry.task)
        code, lines = died
        self._failures[(entry.task, entry.option)] = f"crashed with exit code {code}"
        self._emit(
            ModelCrashed(task=entry.task, option=entry.option, model_id=entry.model_id,
                         device=entry.device,
                         exit_code=code, last_output=tuple(lines))
        )  # fmt: skip

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
                              threshold_bytes=device_limit(r.total, self.inference_config),
                              memory_budget_bytes=self.inference_config.memory_budget_bytes,
                              manager_bytes=sum(per_task.values()), per_task=per_task)
            )  # fmt: skip

    async def shutdown(self) -> None:
        """Unload all models and release the workers, the monitor and device handles.

        New loads are refused from the start; loads in flight finish and are unloaded too.
        """
        if self._closing:
            return
        self._closing = True
        try:
            await self.monitor.stop()
            await self._housekeeper.stop()
            await self.unload_all(reason="shutdown")
        finally:
            await self.devices.close()

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
