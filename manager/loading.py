"""The load pipeline: place, make room, reserve, load, measure, record; one load per task.

Concurrent callers of one task share one load (the task entry's `flight`), shielded from their
cancellation; `cancel` abandons it for all of them (they get LoadCancelledError). Room is made
under the device's lock; the room promised to a load in flight is a reservation, so two loads
never count the same free bytes. After a load measures more than its estimate, the device is
brought back under its budget. A task whose model was parked in host RAM or put to sleep comes
back first (`comeback.Comeback`), through the same room, reservation and measurement as a load;
when that fails it is dropped and loaded cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from opentelemetry.trace import Span

from . import spread
from . import telemetry as tm
from .budget import manager_limit
from .comeback import Comeback
from .config import ModelConfig, TaskConfig
from .core import NO_DEVICE, Core
from .errors import InsufficientMemoryError, LoadCancelledError, ModelInUseError, ModelLoadError
from .events import (
    LoadCancelled,
    LoadFailed,
    LoadProgress,
    ModelLoaded,
    ModelLoading,
    ServerOutput,
)
from .eviction import Eviction, describe_failure
from .load_progress import LoadRun, ProgressReports
from .loaders.base import AsyncLoader, InWorker, LoadContext
from .loaders.servers.loader import SERVER_SLEEP_LEVEL
from .lru import LoadedModel, TaskEntry
from .memory import HOST, DeviceReading, is_cuda
from .residency import Residency

logger = logging.getLogger(__name__)

#: How often `hold()` reloads a model that others keep evicting before it gives up.
USE_ATTEMPTS = 3


def best_cuda_device(
    core: Core, eviction: Eviction, option: ModelConfig, readings: Mapping[str, DeviceReading]
) -> str:
    """Where ``auto`` puts `option` among the CUDA devices of `readings`: one where it could
    ever fit, then the one with the most room left, counting what every process holds. Pure:
    loads and previews (manager/preview.py) both choose here."""

    if len(readings) == 1:
        return next(iter(readings))
    best, best_fit = "", (False, 0)
    for device, reading in readings.items():  # (a loop: previews choose at every step)
        need = core.required_bytes(option, device)
        could_ever = manager_limit(reading.total, core.inference) >= need
        fit = (could_ever, -eviction.shortfall(device, reading, need))
        if not best or fit > best_fit:  # the first of equals, as `max` would
            best, best_fit = device, fit
    return best


class Loading:
    """Loads the selected models of one manager's tasks."""

    def __init__(self, core: Core, eviction: Eviction) -> None:
        self._core = core
        self._eviction = eviction
        self._load_hist = tm.instruments().load_duration
        self._comeback = Comeback(core, eviction, self._context, self._landed, self._load_hist)
        self._runs: dict[asyncio.Task[Any], LoadRun] = {}

    def flight(self, task: str) -> asyncio.Task[Any]:
        """The load in flight for `task`, started if there is none."""
        entry = self._core.table.entry(task)
        flight = entry.flight
        if flight is None:
            run = LoadRun(task)
            flight = asyncio.ensure_future(self._load(entry, run))
            self._runs[flight] = run
            entry.flight = flight
            flight.add_done_callback(self._runs.pop)
            # Retrieve the outcome even when every caller was cancelled: it was reported already.
            flight.add_done_callback(lambda f: f.cancelled() or f.exception())
            flight.add_done_callback(lambda f: self._landed(entry, f))
        return flight

    async def load(self, task: str) -> Any:
        """The task's model: the resident one (now most recently used), else a shared load."""
        loaded = self._core.table.loaded(task)
        if loaded is not None:
            self._core.table.touch(task)
            return loaded.model
        return await asyncio.shield(self.flight(task))

    @staticmethod
    def _landed(entry: TaskEntry, flight: object) -> None:
        """The load is over: not in flight, before its outcome is reported, so that
        subscribers asking for the task's state see the outcome."""
        if entry.flight is flight:
            entry.flight = None
        entry.progress = None

    async def cancel(self, task: str) -> bool:
        """Abandon the load of `task` in flight and wait until nothing of it is held: a loader on
        the loop (a server) is cancelled at once, a blocking one stops at its next progress
        report, or its model is freed the moment it lands. Whether a load was abandoned."""
        flight = self._core.table.entry(task).flight
        run = self._runs.get(flight) if flight is not None else None
        if flight is None or run is None:
            return False
        run.cancelled.set()
        if run.on_loop:
            flight.cancel()
        await asyncio.wait([flight])
        return not flight.cancelled() and isinstance(flight.exception(), LoadCancelledError)

    async def settle(self, task: str) -> None:
        """Wait until no load of `task` is in flight, whatever its outcome."""
        entry = self._core.table.entry(task)
        while (flight := entry.flight) is not None:
            await asyncio.wait([flight])

    async def drain(self) -> None:
        """Wait until no load of any task is in flight."""
        while flights := self._core.table.in_flight():
            await asyncio.wait(flights)

    @contextlib.asynccontextmanager
    async def hold(self, task: str, load: Callable[[str], Awaitable[Any]]) -> AsyncIterator[Any]:
        """The task's model, loaded by `load` if needed and never evicted until the block ends."""
        table = self._core.table
        for _ in range(USE_ATTEMPTS):
            model = await load(task)
            loaded = table.loaded(task)
            # Others may have evicted it between the load and this line: take it only if not.
            if loaded is not None and loaded.model is model:
                break
        else:
            raise InsufficientMemoryError(
                task, f"evicted again {USE_ATTEMPTS} times before it could be held"
            )
        loaded.leases += 1
        loaded.released.clear()
        try:
            yield model
        finally:
            loaded.leases -= 1
            if not loaded.leases:
                loaded.released.set()
            if table.loaded(task) is loaded:
                table.touch(task)

    async def released(self, loaded: LoadedModel, timeout_s: float) -> None:
        """Return once nobody holds `loaded`; ModelInUseError after `timeout_s`."""
        try:
            await asyncio.wait_for(loaded.released.wait(), timeout_s)
        except TimeoutError:
            raise ModelInUseError(
                f"{loaded.task} is still in use by {loaded.leases} caller(s) after "
                f"{timeout_s:g} s; the config was not reloaded"
            ) from None

    async def _load(self, entry: TaskEntry, run: LoadRun) -> Any:
        core = self._core
        task = core.task(entry.task)
        option = task.get_selected_config()
        started = time.monotonic()
        device = NO_DEVICE
        with tm.load_span(task.task_name, option.name, option.model_id) as span:
            try:
                if entry.suspended is not None:
                    back = await self._comeback.bring_back(entry, option, span)
                    if back is not None:
                        return back
                if option.unavailable_reason:
                    reason = f"{option.name} cannot load here: {option.unavailable_reason}"
                    raise ModelLoadError(task.task_name, reason)
                loader = core.loader(option)
                problem = await asyncio.to_thread(loader.source_problem, option)
                if problem:  # before room is made: nothing is evicted for a load that must fail
                    raise ModelLoadError(task.task_name, problem)
                device = await self._place(task.task_name, option, loader)
                spans = await spread.occupied(task.task_name, option, loader, device, core.devices)
                device = spans[0]
                required = core.required_bytes(option, device)
                tm.mark_placed(span, device, required)
                entry.failures.pop(option.name, None)
                entry.progress = (None, "waiting for room")
                core.emit(
                    ModelLoading(task=task.task_name, option=option.name,
                                 model_id=option.model_id, device=device,
                                 required_bytes=required)
                )  # fmt: skip
                model, measured = await self._load_with_room(
                    entry, option, loader, spans, required, run
                )
            except BaseException as exc:
                self._landed(entry, asyncio.current_task())
                if run.cancelled.is_set() and isinstance(
                    exc, asyncio.CancelledError | LoadCancelledError
                ):
                    self._cancelled(entry, option, device, started, span, exc)
                    raise LoadCancelledError(task.task_name, "the load was cancelled") from None
                self._failed(entry, option, exc, started, span)
                if not isinstance(exc, Exception) or isinstance(
                    exc, ModelLoadError | InsufficientMemoryError
                ):
                    raise
                raise ModelLoadError(task.task_name, describe_failure(exc)) from exc
            duration = time.monotonic() - started
            self._landed(entry, asyncio.current_task())
            self._record(entry, task, option, loader, device, model, measured, duration)
            tm.mark_loaded(span, measured)
            self._load_hist.record(duration, {"outcome": "loaded", "framework": option.framework})
        if loader.holds_device_memory and measured > required:
            for each in spans:
                await self._eviction.back_under_budget(each, task.task_name)
        return model

    async def _load_with_room(
        self,
        entry: TaskEntry,
        option: ModelConfig,
        loader: AsyncLoader,
        spans: tuple[str, ...],
        required: int,
        run: LoadRun,
    ) -> tuple[Any, int]:
        devices, device = self._core.devices, spans[0]
        if not loader.holds_device_memory:
            probe = await asyncio.to_thread(lambda: devices.probe)  # first use may detect it
            ctx = self._context(run.task, device, probe, 0, run, loader)
            model = await self._run_loader(run, loader, loader.load(option, ctx))
            return await self._unless_cancelled(run, entry, option, loader, device, model, 0), 0
        need = spread.shares(required, spans)  # on each device its share, room on all or none
        async with devices.locks(spans):
            run.stop_if_cancelled()  # cancelled while waiting for the lock: evict nothing for it
            reading = await spread.make_room_on_each(
                self._eviction, devices, need, for_task=entry.task
            )
            reservations = [devices.reserve(d, nbytes) for d, nbytes in need.items()]
        ctx = self._context(run.task, device, devices.probe, reading.total, run, loader)
        try:
            run.stop_if_cancelled()
            meter = self._core.meter(device, reservations[0])
            model, measured = await self._run_loader(
                run, loader, loader.measured_load(option, ctx, meter)
            )
            kept = await self._unless_cancelled(run, entry, option, loader, device, model, measured)
            return kept, measured
        finally:
            for reservation in reservations:
                devices.release(reservation)  # after a cancelled load's model was freed

    @staticmethod
    async def _run_loader(run: LoadRun, loader: AsyncLoader, loading: Awaitable[Any]) -> Any:
        """Await the loader; while it runs on the loop, cancelling the flight stops it."""
        run.on_loop = not isinstance(loader, InWorker)
        try:
            return await loading
        finally:
            run.on_loop = False

    async def _unless_cancelled(
        self,
        run: LoadRun,
        entry: TaskEntry,
        option: ModelConfig,
        loader: AsyncLoader,
        device: str,
        model: Any,
        measured: int,
    ) -> Any:
        """`model`, unless its load was cancelled while it could not stop: then it is freed the
        moment it lands, verified as an unload is, and the load raises LoadCancelledError."""
        if not run.cancelled.is_set():
            return model
        landed = LoadedModel(entry, model, option, loader, device, measured)
        landed.bytes_by_device = spread.by_device(model, measured)  # freed on each of its devices
        await self._eviction.free_cancelled(landed)
        raise LoadCancelledError(entry.task, "the load was cancelled")

    def _context(
        self,
        task: str,
        device: str,
        probe: Any,
        total_bytes: int,
        run: LoadRun | None = None,
        loader: AsyncLoader | None = None,
    ) -> LoadContext:
        """What a loader gets: its callbacks turn into events on the loop's thread; progress is
        rate-limited there, and is where a blocking `loader` meets `run`'s cancellation."""
        core = self._core
        return LoadContext(
            task=task,
            device=device,
            probe=probe,
            device_total_bytes=total_bytes,
            progress=ProgressReports(
                run or LoadRun(task),
                lambda fraction, stage: core.call_on_loop(self._on_progress, task, fraction, stage),
                blocking=isinstance(loader, InWorker),
            ),
            output=lambda line: core.call_on_loop(core.emit, ServerOutput(task=task, line=line)),
            extra={SERVER_SLEEP_LEVEL: core.inference.server_sleep_level},
        )

    def _on_progress(self, task: str, fraction: float | None, stage: str) -> None:
        entry = self._core.table.entry(task)
        if entry.flight is not None:  # a late report from a finished load changes nothing
            entry.progress = (fraction, stage)
            self._core.emit(LoadProgress(task=task, fraction=fraction, stage=stage))

    async def _place(self, task: str, option: ModelConfig, loader: AsyncLoader) -> str:
        """The device for `option`: as configured, or for ``auto`` the CUDA device where it fits
        best, counting what every process holds (the host when there is no CUDA device)."""
        if not loader.holds_device_memory:
            return NO_DEVICE
        core = self._core
        devices = await core.devices.names_async()
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
        readings = await asyncio.to_thread(lambda: {d: core.devices.read(d) for d in cuda})
        return best_cuda_device(core, self._eviction, option, readings)

    def _record(
        self,
        entry: TaskEntry,
        task: TaskConfig,
        option: ModelConfig,
        loader: AsyncLoader,
        device: str,
        model: Any,
        measured: int,
        duration: float,
    ) -> None:
        core = self._core
        loaded = LoadedModel(entry, model, option, loader, device, measured, duration)
        loaded.bytes_by_device = spread.by_device(model, measured)  # a multi-GPU server: parts
        core.table.add(loaded)
        if loader.holds_device_memory:
            core.ledger.record(option, device, measured, duration)
            core.ledger.record_restore(option, device, Residency.OFF.value, duration)
            # Saved by the device's worker, after the load: file I/O stays off the loop.
            core.devices.submit(device, core.ledger.save)
        core.emit(
            ModelLoaded(task=task.task_name, option=option.name, model_id=option.model_id,
                        device=device, measured_bytes=measured,
                        estimated_bytes=option.vram_bytes, duration_s=duration)
        )  # fmt: skip

    def _cancelled(
        self,
        entry: TaskEntry,
        option: ModelConfig,
        device: str,
        started: float,
        span: Span,
        exc: BaseException,
    ) -> None:
        """A cancelled load leaves the task unloaded, not failed: no failure is recorded."""
        current = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and current is not None:
            current.uncancel()  # the cancellation ends here, as a LoadCancelledError
        tm.mark_failed(span, "cancelled")
        duration = time.monotonic() - started
        self._load_hist.record(duration, {"outcome": "cancelled", "framework": option.framework})
        logger.info("loading %s (%s) was cancelled", entry.task, option.model_id)
        self._core.emit(
            LoadCancelled(task=entry.task, option=option.name, model_id=option.model_id,
                          device=device, duration_s=duration)
        )  # fmt: skip

    def _failed(
        self, entry: TaskEntry, option: ModelConfig, exc: BaseException, started: float, span: Span
    ) -> None:
        if isinstance(exc, asyncio.CancelledError):
            reason = "cancelled"
        elif isinstance(exc, ModelLoadError):  # said by the manager already, for this task
            reason = exc.reason
        else:  # a loader's own error: its class says what kind of failure it was
            reason = describe_failure(exc)
        entry.failures[option.name] = reason
        tm.mark_failed(span, reason)
        duration = time.monotonic() - started
        self._load_hist.record(duration, {"outcome": "failed", "framework": option.framework})
        logger.warning("loading %s (%s) failed: %s", entry.task, option.model_id, reason)
        self._core.emit(
            LoadFailed(task=entry.task, option=option.name, model_id=option.model_id,
                       reason=reason, duration_s=duration)
        )  # fmt: skip


__all__ = ["USE_ATTEMPTS", "Loading", "best_cuda_device"]
