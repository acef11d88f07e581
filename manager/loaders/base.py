"""The loader protocol: how the manager loads, measures and unloads one framework's models.

The manager talks to one async protocol, `AsyncLoader`; its optional members have defaults, so a
loader subclasses it and writes only what it needs. A plug-in may instead be a plain object with
blocking methods (`Loader`, the shape any loader has): `as_async` wraps it in `InWorker`, which
runs every blocking call in the worker thread of the model's device, so memory deltas on that
device are attributable. Loaders return values and never emit events; progress goes through the
thread-safe callbacks in `LoadContext`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.memory import MemoryProbe
from vramdeck.manager.residency import Residency

T = TypeVar("T")

#: A crashed model's exit code and last output lines.
Death = tuple[int | None, tuple[str, ...]]


def _ignore_progress(fraction: float | None, stage: str) -> None:
    pass


def _ignore_output(line: str) -> None:
    pass


@dataclass(frozen=True)
class LoadContext:
    """What a loader gets besides the option: where to load, the manager's probe, how to report.

    `progress` and `output` may be called from any thread; the manager turns them into events on
    the loop's thread. `probe` is the manager's memory probe (read it off the event loop).
    """

    task: str
    device: str
    probe: MemoryProbe
    device_total_bytes: int = 0
    progress: Callable[[float | None, str], None] = _ignore_progress
    output: Callable[[str], None] = _ignore_output
    extra: dict[str, Any] = field(default_factory=dict)


class LoaderUnavailable(RuntimeError):
    """The framework cannot load here (a package is missing); the message says what to do."""


class Suspension(Protocol):
    """What `AsyncLoader.suspend` did (a server's `SleepReport` is one)."""

    @property
    def kept(self) -> bool:
        """True: the model is suspended and can be resumed; False: it was released instead."""
        ...

    @property
    def held_after(self) -> int | None:
        """What it still holds on its device while suspended (None: cannot tell)."""
        ...

    @property
    def duration_s(self) -> float: ...

    @property
    def reason(self) -> str:
        """Why it was released instead of kept; empty when kept."""
        ...


class Resumption(Protocol):
    """What `AsyncLoader.resume` did (a server's `WakeReport` is one)."""

    @property
    def taken_bytes(self) -> int: ...

    @property
    def duration_s(self) -> float: ...


@dataclass(frozen=True)
class Parked:
    """A `Suspension` of an in-process model: its tensors went to host RAM (`host_bytes`)."""

    host_bytes: int
    duration_s: float
    kept: bool = True
    held_after: int | None = 0
    reason: str = ""


@dataclass(frozen=True)
class Restored:
    """A `Resumption` of a parked model: `taken_bytes` copied back to its device."""

    taken_bytes: int
    duration_s: float


class DeviceMeter(Protocol):
    """The manager's view of one device around a load or an unload; blocking, call off the loop."""

    def used(self) -> int | None:
        """Bytes the device shows used now; None where the probe cannot attribute them (host)."""
        ...

    def allocating(self, used: int | None) -> None:
        """The load starts allocating now; the device showed `used` bytes just before."""
        ...


@runtime_checkable
class Loader(Protocol):
    """The members every loader has, blocking or async (what a plug-in entry point offers).

    Optional members, which `AsyncLoader` declares with defaults: ``holds_device_memory`` (True),
    ``live_footprint`` (False) and, for blocking loaders, ``prepare(device)``.
    """

    frameworks: ClassVar[tuple[str, ...]]

    def unavailable_reason(self, option: ModelConfig) -> str | None: ...

    def load(self, option: ModelConfig, ctx: LoadContext) -> Any: ...

    def footprint(self, model: Any, device: str) -> int | None: ...

    def unload(self, model: Any, device: str) -> Awaitable[None] | None: ...

    def check(self, model: Any) -> Death | None: ...


class AsyncLoader:
    """The one protocol the manager uses. Subclass it; override what your framework needs.

    Attributes
    ----------
    frameworks : tuple[str, ...]
        The `framework:` values this loader serves.
    holds_device_memory : bool
        False for loaders whose models take no local memory (external APIs): they are never
        placed on a device nor counted against a budget, at load or in `validate_memory_budget`.
    live_footprint : bool
        True when `footprint` is the truth (another process's memory): re-read while loaded.
    suspends_to : Residency
        Where `suspend` sends a model instead of unloading it: HOST (parked in RAM), SLEEPING
        (a server keeps its process), OFF (the default: nothing to suspend, always unloaded).
    """

    frameworks: ClassVar[tuple[str, ...]] = ()
    holds_device_memory: ClassVar[bool] = True
    live_footprint: ClassVar[bool] = False
    suspends_to: ClassVar[Residency] = Residency.OFF

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        """Why `option` cannot load here (e.g. "pip install vllm"), or None when it can."""
        return None

    def source_problem(self, option: ModelConfig) -> str | None:
        """Why loading `option` now would surely fail, found cheaply before the manager makes
        room for it (a local model folder that is not there), or None. Asked at each load, in
        a thread: nothing is evicted for a load that cannot succeed."""
        return None

    async def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        """Load `option` onto `ctx.device` and return the model (or a client handle).

        Runs on the event loop: never block here. On failure free what was taken, then raise.
        """
        raise NotImplementedError

    def footprint(self, model: Any, device: str) -> int | None:
        """Bytes `model` holds on `device` by its own account, or None; quick, any thread."""
        return None

    async def unload(self, model: Any, device: str) -> None:
        """Release `model`'s memory; the manager drops its last reference afterwards."""

    def check(self, model: Any) -> Death | None:
        """None while healthy; (exit code, last output lines) once the model's process died.
        Runs on the loop twice a second: look at state only, never wait."""
        return None

    def can_suspend(self, model: Any) -> bool:
        """Whether an eviction may `suspend` this model instead of unloading it."""
        return False

    def would_suspend(self, option: ModelConfig, ctx: LoadContext) -> bool:
        """Whether a model of `option`, once loaded with `ctx`, could be suspended: the answer
        of `can_suspend` before the model exists (a preview asks it of the loads it plays)."""
        return False

    async def suspend(
        self,
        model: Any,
        ctx: LoadContext,
        *,
        verify_timeout_s: float = 5.0,
        drain_timeout_s: float | None = None,
    ) -> Suspension:
        """Free `model`'s device memory but keep it, so that `resume` brings it back faster than
        a load. A report with ``kept=False`` says it was released instead; raising means nothing
        was done (the manager then unloads it)."""
        raise NotImplementedError(f"{type(self).__name__} cannot suspend a model")

    async def resume(self, model: Any, ctx: LoadContext) -> Resumption:
        """Bring a suspended `model` back onto `ctx.device`; raise when it cannot (the manager
        then unloads it and loads it cold)."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume a model")

    async def measured_suspend(
        self, model: Any, ctx: LoadContext, meter: DeviceMeter, **kw: Any
    ) -> tuple[int | None, Suspension]:
        """Suspend; returns what the device showed used just before (None: not attributable)."""
        before = await asyncio.to_thread(meter.used)
        return before, await self.suspend(model, ctx, **kw)

    async def measured_load(
        self, option: ModelConfig, ctx: LoadContext, meter: DeviceMeter
    ) -> tuple[Any, int]:
        """Load and return (model, bytes it takes): the loader's own count, else the estimate."""
        meter.allocating(await asyncio.to_thread(meter.used))
        model = await self.load(option, ctx)
        own = self.footprint(model, ctx.device)
        return model, own if own is not None else option.vram_bytes

    async def measured_unload(self, model: Any, device: str, meter: DeviceMeter) -> int | None:
        """Unload; returns what the device showed used just before (None: not attributable)."""
        before = await asyncio.to_thread(meter.used)
        await self.unload(model, device)
        return before


class Worker(Protocol):
    """Runs blocking work in the worker thread of a device (the manager's `DevicePool`)."""

    def submit(self, device: str, fn: Callable[..., T], *args: Any) -> Future[T]: ...

    async def run(self, device: str, fn: Callable[..., T], *args: Any) -> T: ...


class InWorker(AsyncLoader):
    """Adapts a blocking loader: each call runs in the device's worker, and a load is measured
    there in one go (the device's change across it), so no other work on the device mixes in."""

    def __init__(self, loader: Loader, worker: Worker) -> None:
        self.loader = loader
        self._worker = worker
        self.frameworks = loader.frameworks  # type: ignore[misc]
        # Optional members of a plain object: read once, here.
        self.holds_device_memory = getattr(loader, "holds_device_memory", True)  # type: ignore[misc]
        self.live_footprint = getattr(loader, "live_footprint", False)  # type: ignore[misc]
        self.suspends_to = getattr(loader, "suspends_to", Residency.OFF)  # type: ignore[misc]
        self._can_suspend: Callable[[Any], bool] = getattr(loader, "can_suspend", lambda m: False)
        self._would_suspend: Callable[[ModelConfig, LoadContext], bool] = getattr(
            loader, "would_suspend", lambda option, ctx: False
        )
        self._prepare: Callable[[str], object] = getattr(loader, "prepare", lambda device: None)
        self._source_problem: Callable[[ModelConfig], str | None] = getattr(
            loader, "source_problem", lambda option: None
        )

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        return self.loader.unavailable_reason(option)

    def source_problem(self, option: ModelConfig) -> str | None:
        return self._source_problem(option)

    async def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        return await self._worker.run(ctx.device, self.loader.load, option, ctx)

    def footprint(self, model: Any, device: str) -> int | None:
        return self.loader.footprint(model, device)

    async def unload(self, model: Any, device: str) -> None:
        await self._worker.run(device, self.loader.unload, model, device)

    def check(self, model: Any) -> Death | None:
        return self.loader.check(model)

    def can_suspend(self, model: Any) -> bool:
        return self._can_suspend(model)

    def would_suspend(self, option: ModelConfig, ctx: LoadContext) -> bool:
        return self._would_suspend(option, ctx)

    async def suspend(self, model: Any, ctx: LoadContext, **kw: Any) -> Suspension:
        """A blocking loader's ``suspend(model, device)``, in the device's worker."""
        report: Suspension = await self._worker.run(ctx.device, self._blocking("suspend"), model,
                                                    ctx.device)  # fmt: skip
        return report

    async def resume(self, model: Any, ctx: LoadContext) -> Resumption:
        """A blocking loader's ``resume(model, device)``, in the device's worker."""
        report: Resumption = await self._worker.run(ctx.device, self._blocking("resume"), model,
                                                    ctx.device)  # fmt: skip
        return report

    async def measured_suspend(
        self, model: Any, ctx: LoadContext, meter: DeviceMeter, **kw: Any
    ) -> tuple[int | None, Suspension]:
        suspend = self._blocking("suspend")

        def read_then_suspend() -> tuple[int | None, Suspension]:
            before = meter.used()
            return before, suspend(model, ctx.device)

        return await self._worker.run(ctx.device, read_then_suspend)

    def _blocking(self, name: str) -> Callable[[Any, str], Any]:
        method: Callable[[Any, str], Any] | None = getattr(self.loader, name, None)
        if method is None:
            raise NotImplementedError(f"{type(self.loader).__name__} has no {name}")
        return method

    async def measured_load(
        self, option: ModelConfig, ctx: LoadContext, meter: DeviceMeter
    ) -> tuple[Any, int]:
        work = self._worker.submit(ctx.device, self._load_measured, option, ctx, meter)
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            # The worker cannot be stopped mid-load: give back what it loads once it is done.
            def release_late(done: Future[tuple[Any, int]]) -> None:
                if not done.cancelled() and done.exception() is None:
                    self.loader.unload(done.result()[0], ctx.device)

            work.add_done_callback(release_late)
            raise

    def _load_measured(
        self, option: ModelConfig, ctx: LoadContext, meter: DeviceMeter
    ) -> tuple[Any, int]:
        """Worker: the device delta (allocator slack included) is what the model took where the
        probe can attribute it; elsewhere (host RAM) the loader's own count of its bytes."""
        self._prepare(ctx.device)
        before = meter.used()
        meter.allocating(before)
        model = self.loader.load(option, ctx)
        try:
            after = meter.used()
            own = self.loader.footprint(model, ctx.device)
        except BaseException:
            self.loader.unload(model, ctx.device)
            raise
        own_bytes = own if own is not None else option.vram_bytes
        if self.live_footprint or before is None or after is None:
            return model, own_bytes
        # A model takes at least its own tensors; a smaller delta is the driver's page rounding.
        return model, max(after - before, own_bytes)

    async def measured_unload(self, model: Any, device: str, meter: DeviceMeter) -> int | None:
        def read_then_unload() -> int | None:
            before = meter.used()
            self.loader.unload(model, device)
            return before

        return await self._worker.run(device, read_then_unload)


def as_async(loader: Loader | AsyncLoader, worker: Worker) -> AsyncLoader:
    """`loader` itself when it is an `AsyncLoader`, else wrapped to run in the device workers."""
    return loader if isinstance(loader, AsyncLoader) else InWorker(loader, worker)


__all__ = [
    "AsyncLoader",
    "Death",
    "DeviceMeter",
    "InWorker",
    "LoadContext",
    "Loader",
    "LoaderUnavailable",
    "Parked",
    "Restored",
    "Resumption",
    "Suspension",
    "Worker",
    "as_async",
]
