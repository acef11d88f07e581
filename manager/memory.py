"""Device memory probes: total / used / free bytes per device, and per-process use.

- ``NvmlProbe``: NVIDIA devices through NVML. Device-wide truth: what other processes hold counts.
- ``TorchProbe``: CUDA devices through ``torch.cuda.mem_get_info`` when NVML cannot be used.
- ``HostProbe``: system RAM as the device ``cpu``, so everything works with no GPU at all.
- ``SystemProbe``: the CUDA devices of the best GPU probe, plus ``cpu``.

Beside memory, as nvitop shows it: a device's utilisation and the processes on it
(``read_activity``), where NVML reports them.

NVML is wrapped once: "not supported" and friends become ``None``, never exceptions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import psutil

from .nvml import DeviceActivity, GpuProcess, Nvml, read_nvml_activity, text_of

logger = logging.getLogger(__name__)

HOST = "cpu"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One reading of one device, in bytes."""

    device: str
    name: str
    total: int
    used: int
    probe: str

    @property
    def free(self) -> int:
        return max(0, self.total - self.used)


class MemoryProbe(Protocol):
    """What the manager needs from a source of memory readings. Methods may block briefly."""

    @property
    def name(self) -> str:
        """Which probe this is: nvml, torch or host."""
        ...

    def devices(self) -> list[str]:
        """Device names, e.g. ``["cuda:0", "cuda:1", "cpu"]``."""
        ...

    def read(self, device: str) -> DeviceReading:
        """Current reading of `device`."""
        ...

    def process_bytes(self, device: str, pids: Iterable[int]) -> int | None:
        """Bytes `pids` hold on `device`, or None where the device cannot tell."""
        ...

    def attributes_frees(self, device: str) -> bool:
        """Whether a freed model shows up in `read(device)` reliably enough to verify it."""
        ...

    def close(self) -> None:
        """Release handles (NVML shutdown)."""
        ...


class ProbeError(RuntimeError):
    """A device's memory could not be read; the message names the device and the cause."""


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def device_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def torch_cached_free(device: str) -> int:
    """Bytes that torch's caching allocator in this process holds reserved but unallocated on
    `device`. The driver counts them as used, yet this process's next load reuses them, and a
    freed model's blocks that share a segment with another model's stay there, not with the
    driver. 0 where torch is not imported or CUDA not started (torch is never imported here)."""
    torch = sys.modules.get("torch")
    if torch is None or not is_cuda(device) or not torch.cuda.is_initialized():
        return 0
    i = device_index(device)
    return max(0, int(torch.cuda.memory_reserved(i)) - int(torch.cuda.memory_allocated(i)))


class HostProbe:
    """System RAM through psutil, reported as device ``cpu``."""

    name = "host"

    def devices(self) -> list[str]:
        return [HOST]

    def read(self, device: str = HOST) -> DeviceReading:
        vm = psutil.virtual_memory()
        return DeviceReading(HOST, "System RAM", vm.total, vm.total - vm.available, self.name)

    def process_bytes(self, device: str, pids: Iterable[int]) -> int | None:
        total = 0
        for pid in pids:
            try:
                total += psutil.Process(pid).memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def attributes_frees(self, device: str) -> bool:
        # System RAM moves with every process on the machine, and the C allocator may keep freed
        # pages: a drop of a few hundred MB cannot be told from noise.
        return False

    def close(self) -> None:
        pass


def visible_indices(spec: str | None, uuids: list[str]) -> list[int]:
    """The NVML indices that CUDA numbers 0, 1, … under ``CUDA_VISIBLE_DEVICES=spec``.

    Entries are indices or (prefixes of) UUIDs; as CUDA does, the list ends at the first entry
    that names no device.
    """
    if spec is None:
        return list(range(len(uuids)))
    chosen: list[int] = []
    for item in (part.strip() for part in spec.split(",")):
        if item.isdigit():
            index: int | None = int(item) if int(item) < len(uuids) else None
        else:
            index = next((i for i, u in enumerate(uuids) if item and u.startswith(item)), None)
        if index is None or index in chosen:
            break
        chosen.append(index)
    return chosen


class NvmlProbe:
    """NVIDIA devices through NVML: device-wide memory and per-process use.

    Devices are numbered as torch numbers them: only those in ``CUDA_VISIBLE_DEVICES``, in PCI
    bus order (``CUDA_DEVICE_ORDER`` defaults to ``PCI_BUS_ID`` here, as NVML counts, so
    ``cuda:N`` names the same card for the probe and for torch).
    """

    name = "nvml"

    def __init__(self) -> None:
        self._nvml = Nvml()
        self._handles: list[Any] = []
        self._names: list[str] = []
        if not self._nvml.start():
            return
        import pynvml

        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        handles = [
            self._nvml.call(pynvml.nvmlDeviceGetHandleByIndex, i)
            for i in range(self._nvml.call(pynvml.nvmlDeviceGetCount) or 0)
        ]
        uuids = [
            text_of(self._nvml.call(pynvml.nvmlDeviceGetUUID, h)) if h else "" for h in handles
        ]
        for i in visible_indices(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids):
            if handles[i] is None:
                continue
            self._handles.append(handles[i])
            self._names.append(
                text_of(self._nvml.call(pynvml.nvmlDeviceGetName, handles[i])) or f"GPU {i}"
            )

    @property
    def available(self) -> bool:
        return bool(self._handles)

    @property
    def library_missing(self) -> bool:
        return self._nvml.library_missing

    def devices(self) -> list[str]:
        return [f"cuda:{i}" for i in range(len(self._handles))]

    def read(self, device: str) -> DeviceReading:
        import pynvml

        i = device_index(device)
        info = self._nvml.call(pynvml.nvmlDeviceGetMemoryInfo, self._handles[i])
        if info is None:
            # No guess: a reading of 0 bytes would look like room, or like a full device.
            raise ProbeError(f"cannot read the memory of {device} ({self._names[i]}) through NVML")
        return DeviceReading(device, self._names[i], int(info.total), int(info.used), self.name)

    def process_bytes(self, device: str, pids: Iterable[int]) -> int | None:
        import pynvml

        procs = self._nvml.call(
            pynvml.nvmlDeviceGetComputeRunningProcesses, self._handles[device_index(device)]
        )
        if procs is None:
            return None
        wanted = set(pids)
        return sum(int(p.usedGpuMemory or 0) for p in procs if p.pid in wanted)

    def attributes_frees(self, device: str) -> bool:
        return True

    def activity(self, device: str) -> DeviceActivity:
        """Utilisation and every process on `device` (compute and graphics, each PID once)."""
        return read_nvml_activity(self._nvml, self._handles[device_index(device)], device)

    def close(self) -> None:
        self._nvml.stop()


class TorchProbe:
    """CUDA devices through torch, for when NVML cannot be used (no per-process view)."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._count = torch.cuda.device_count() if torch.cuda.is_available() else 0

    @property
    def available(self) -> bool:
        return self._count > 0

    def devices(self) -> list[str]:
        return [f"cuda:{i}" for i in range(self._count)]

    def read(self, device: str) -> DeviceReading:
        i = device_index(device)
        free, total = self._torch.cuda.mem_get_info(i)
        return DeviceReading(
            device, self._torch.cuda.get_device_name(i), int(total), int(total - free), self.name
        )

    def process_bytes(self, device: str, pids: Iterable[int]) -> int | None:
        return None

    def attributes_frees(self, device: str) -> bool:
        return True

    def close(self) -> None:
        pass


class SystemProbe:
    """Every device of this machine: CUDA devices (NVML, else torch) and the host as ``cpu``."""

    def __init__(self, gpu: NvmlProbe | TorchProbe | None = None, host: HostProbe | None = None):
        self._gpu = gpu
        self._host = host or HostProbe()

    @classmethod
    def detect(cls) -> SystemProbe:
        """NVML when it sees a device; torch only when NVML's library exists but cannot be used.

        With no NVIDIA library at all there is no CUDA device either, so torch (1.4 s to import)
        is not imported just to learn that.
        """
        nvml = NvmlProbe()
        if nvml.available:
            return cls(nvml)
        if nvml.library_missing and "torch" not in sys.modules:
            return cls(None)
        try:
            torch_probe = TorchProbe()
        except Exception:  # noqa: BLE001 - torch without a usable CUDA: no GPU probe, host only
            return cls(None)
        return cls(torch_probe if torch_probe.available else None)

    @property
    def name(self) -> str:
        return self._gpu.name if self._gpu is not None else self._host.name

    def _for(self, device: str) -> MemoryProbe:
        if is_cuda(device):
            if self._gpu is None:
                raise ValueError(f"no CUDA device here; {device!r} cannot be read")
            return self._gpu
        return self._host

    def devices(self) -> list[str]:
        gpus = self._gpu.devices() if self._gpu is not None else []
        return [*gpus, HOST]

    def read(self, device: str) -> DeviceReading:
        return self._for(device).read(device)

    def process_bytes(self, device: str, pids: Iterable[int]) -> int | None:
        return self._for(device).process_bytes(device, pids)

    def attributes_frees(self, device: str) -> bool:
        return self._for(device).attributes_frees(device)

    def activity(self, device: str) -> DeviceActivity | None:
        """Utilisation and processes of a CUDA `device`; None where NVML does not read it."""
        if isinstance(self._gpu, NvmlProbe) and is_cuda(device):
            return self._gpu.activity(device)
        return None

    def close(self) -> None:
        if self._gpu is not None:
            self._gpu.close()


def own_process_ids() -> set[int]:
    """This process and its descendants (the model servers it started)."""
    me = psutil.Process()
    pids = {me.pid}
    with contextlib.suppress(psutil.Error):
        pids.update(child.pid for child in me.children(recursive=True))
    return pids


def read_activity(probe: MemoryProbe, device: str) -> DeviceActivity | None:
    """`device`'s utilisation and the processes on it that are not this program's; None where
    the probe cannot tell (no NVML, a device that is not CUDA, a probe made for a test)."""
    activity = probe.activity(device) if isinstance(probe, SystemProbe) else None
    if activity is None:
        return None
    own = own_process_ids()
    others = tuple(p for p in activity.processes if p.pid not in own)
    return DeviceActivity(activity.device, activity.utilisation, others)


__all__ = [
    "HOST",
    "DeviceActivity",
    "DeviceReading",
    "GpuProcess",
    "HostProbe",
    "MemoryProbe",
    "NvmlProbe",
    "ProbeError",
    "SystemProbe",
    "TorchProbe",
    "device_index",
    "is_cuda",
    "own_process_ids",
    "read_activity",
    "torch_cached_free",
    "visible_indices",
]
