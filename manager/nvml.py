"""The one wrapper around pynvml, and what NVML reads besides memory: a device's utilisation
and the processes on it (as nvitop shows them). pynvml is imported only once NVML is used."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process using a GPU: its PID, its name, and the bytes it holds there."""

    pid: int
    name: str
    used: int | None  # None where NVML does not say (some drivers; processes it cannot see)


@dataclass(frozen=True, slots=True)
class DeviceActivity:
    """What a device is doing besides its memory: utilisation and the processes on it."""

    device: str
    utilisation: int | None  # percent of the last sample period a kernel ran; None: unknown
    processes: tuple[GpuProcess, ...]


class Nvml:
    """The one wrapper around pynvml: every call returns a value or None, never raises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self.error: str | None = None
        self.library_missing = False

    def start(self) -> bool:
        with self._lock:
            if self._ready:
                return True
            try:
                import pynvml
            except ImportError as exc:
                self.error, self.library_missing = f"pynvml is not installed: {exc}", True
                return False
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:  # LibraryNotFound, DriverNotLoaded, NoPermission …
                self.error = f"{type(exc).__name__}: {exc}"
                self.library_missing = "LibraryNotFound" in type(exc).__name__
                return False
            self._ready = True
            return True

    def call(self, fn: Callable[..., T], *args: Any) -> T | None:
        if not self._ready:
            return None
        import pynvml

        try:
            return fn(*args)
        except pynvml.NVMLError as exc:  # NotSupported, GpuIsLost, …: a value, not a crash
            logger.debug("NVML %s failed: %s", getattr(fn, "__name__", fn), exc)
            return None

    def stop(self) -> None:
        with self._lock:
            if self._ready:
                import pynvml

                self.call(pynvml.nvmlShutdown)
                self._ready = False


def read_nvml_activity(nvml: Nvml, handle: Any, device: str) -> DeviceActivity:
    """Utilisation and every process on the device of `handle` (compute and graphics, each PID
    once); what NVML does not report is None or left out, never a guess."""
    import pynvml

    rates = nvml.call(pynvml.nvmlDeviceGetUtilizationRates, handle)
    found: dict[int, GpuProcess] = {}
    for query in (pynvml.nvmlDeviceGetComputeRunningProcesses,
                  pynvml.nvmlDeviceGetGraphicsRunningProcesses):  # fmt: skip
        for proc in nvml.call(query, handle) or ():
            used = getattr(proc, "usedGpuMemory", None)  # None: NVML_VALUE_NOT_AVAILABLE
            if proc.pid not in found:
                found[proc.pid] = GpuProcess(proc.pid, process_name(proc.pid), used)
    busy = int(rates.gpu) if rates is not None else None
    return DeviceActivity(device, busy, tuple(found.values()))


def process_name(pid: int) -> str:
    """A process's name, or a word saying why there is none (it ended; another container)."""
    try:
        return psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        return "not in this PID namespace"
    except psutil.AccessDenied:
        return "another user's process"


def text_of(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["DeviceActivity", "GpuProcess", "Nvml", "process_name", "read_nvml_activity", "text_of"]
