"""Fakes for fast unit tests: a probe with scripted devices, and a loader that 'allocates' on it.

They stand in for the GPU beside, never instead of, the real-model tests in tests/manager.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vramdeck.manager.config import GIB, ModelConfig
from vramdeck.manager.loaders import LoadContext
from vramdeck.manager.loaders.base import Parked, Restored
from vramdeck.manager.memory import HOST, DeviceReading
from vramdeck.manager.residency import Residency


class FakeProbe:
    """Devices with a fixed total; `used` moves when FakeLoader models load and unload."""

    name = "fake"

    def __init__(self, devices: dict[str, float], *, other_gb: dict[str, float] | None = None):
        self.total = {d: int(gb * GIB) for d, gb in devices.items()}
        self.used = {d: int((other_gb or {}).get(d, 0) * GIB) for d in devices}
        self.lock = threading.Lock()
        self.reads = 0
        self.leak: dict[str, int] = {}  # device → bytes an unload keeps

    def devices(self) -> list[str]:
        return list(self.total)

    def read(self, device: str) -> DeviceReading:
        with self.lock:
            self.reads += 1
            return DeviceReading(
                device, f"Fake {device}", self.total[device], self.used[device], self.name
            )

    def add(self, device: str, nbytes: int) -> None:
        with self.lock:
            self.used[device] += nbytes

    def process_bytes(self, device: str, pids: Iterable[int]) -> int | None:
        return None

    def attributes_frees(self, device: str) -> bool:
        return True

    def close(self) -> None:
        pass


@dataclass
class FakeModel:
    """What FakeLoader returns: the option it came from and the bytes it holds."""

    model_id: str
    device: str
    nbytes: int
    thread: str
    unloaded: bool = False
    parked: bool = False


@dataclass
class FakeLoader:
    """Loads `FakeModel`s that take their option's `vram_gb` on the FakeProbe (or `sizes`)."""

    probe: FakeProbe
    delay_s: float = 0.0
    fail: set[str] = field(default_factory=set)  # model_ids whose load raises
    sizes: dict[str, int] = field(default_factory=dict)  # model_id → real bytes, else the estimate
    gate: threading.Event | None = None  # when set, loads wait for it
    loads: list[str] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)

    frameworks: ClassVar[tuple[str, ...]] = ("transformers", "pytorch", "fake")
    holds_device_memory: ClassVar[bool] = True

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        return None

    def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        thread = threading.current_thread().name
        self.threads.append(thread)
        self.loads.append(option.model_id)
        ctx.progress(0.5, "half way")
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        nbytes = self.sizes.get(option.model_id, option.vram_bytes)
        self.probe.add(ctx.device, nbytes)
        if option.model_id in self.fail:
            self.probe.add(ctx.device, -nbytes)  # a loader frees what it took before raising
            raise RuntimeError(f"cannot load {option.model_id}")
        return FakeModel(option.model_id, ctx.device, nbytes, thread)

    def footprint(self, model: FakeModel, device: str) -> int:
        return model.nbytes

    def unload(self, model: FakeModel, device: str) -> None:
        self.unloads.append(model.model_id)
        self.threads.append(threading.current_thread().name)
        model.unloaded = True
        self.probe.add(device, -(model.nbytes - self.probe.leak.get(device, 0)))

    def check(self, model: FakeModel) -> None:
        return None


@dataclass
class ParkingFakeLoader(FakeLoader):
    """A FakeLoader whose models park: `suspend` moves their bytes from the probe's device
    counter to its host ("cpu") counter and `resume` moves them back, so "device" and "host"
    bytes stay apart. `park_fails`, `park_keeps` (the device does not get the memory back) and
    `restore_fails` script the failures the manager must fall back from."""

    park_fails: bool = False
    park_keeps: bool = False
    restore_fails: bool = False
    parks: list[str] = field(default_factory=list)
    restores: list[str] = field(default_factory=list)

    suspends_to: ClassVar[Residency] = Residency.HOST

    def can_suspend(self, model: FakeModel) -> bool:
        return True

    def would_suspend(self, option: ModelConfig, ctx: LoadContext) -> bool:
        return True

    def suspend(self, model: FakeModel, device: str) -> Parked:
        if self.park_fails:
            raise RuntimeError(f"cannot pin host memory for {model.model_id}")
        self.parks.append(model.model_id)
        if not self.park_keeps:
            self.probe.add(device, -model.nbytes)
        self.probe.add(HOST, model.nbytes)
        model.parked = True
        return Parked(host_bytes=model.nbytes, duration_s=0.0)

    def resume(self, model: FakeModel, device: str) -> Restored:
        self.restores.append(model.model_id)
        if self.restore_fails:
            raise RuntimeError(f"out of memory restoring {model.model_id}")
        self.probe.add(HOST, -model.nbytes)
        self.probe.add(device, model.nbytes)
        model.parked = False
        return Restored(taken_bytes=model.nbytes, duration_s=0.0)

    def unload(self, model: FakeModel, device: str) -> None:
        if not model.parked:
            super().unload(model, device)
            return
        self.unloads.append(model.model_id)
        model.unloaded, model.parked = True, False
        self.probe.add(HOST, -model.nbytes)
        if self.park_keeps:
            self.probe.add(device, -model.nbytes)


@dataclass
class SleepingFakeLoader(ParkingFakeLoader):
    """Its models 'sleep' as a server does: off the device but for 1 GB of contexts they keep."""

    suspends_to: ClassVar[Residency] = Residency.SLEEPING

    def suspend(self, model: FakeModel, device: str) -> Parked:
        self.parks.append(model.model_id)
        self.probe.add(device, -(model.nbytes - GIB))
        model.parked = True
        return Parked(host_bytes=0, duration_s=0.0, held_after=GIB)

    def resume(self, model: FakeModel, device: str) -> Restored:
        self.restores.append(model.model_id)
        self.probe.add(device, model.nbytes - GIB)
        model.parked = False
        return Restored(taken_bytes=model.nbytes - GIB, duration_s=0.0)

    def unload(self, model: FakeModel, device: str) -> None:
        self.unloads.append(model.model_id)
        self.probe.add(device, -(GIB if model.parked else model.nbytes))
        model.unloaded, model.parked = True, False


class TwoGpuProbe(FakeProbe):
    """Two CUDA devices on which a server's processes hold `server_bytes` each while they run.

    NVML's per-process figures for real processes: `process_bytes` answers for the pids asked
    about, and `read` counts those bytes as used until every one of those processes has exited,
    so a test sees a stopped server's memory come back on both devices only once it is gone.
    """

    def __init__(self, total_gb: float = 8.0, server_gb: dict[str, float] | None = None) -> None:
        super().__init__({"cuda:0": total_gb, "cuda:1": total_gb, "cpu": 64.0})
        gb = server_gb if server_gb is not None else {"cuda:0": 2.0, "cuda:1": 2.0}
        self.server_bytes = {d: int(v * GIB) for d, v in gb.items()}
        self.server_pids: set[int] = set()
        self.asked: list[str] = []  # the devices process_bytes was asked about, in order

    def _server_running(self) -> bool:
        return any(_alive(pid) for pid in self.server_pids)

    def read(self, device: str) -> DeviceReading:
        reading = super().read(device)
        if self._server_running():
            held = self.server_bytes.get(device, 0)
            return DeviceReading(
                device, reading.name, reading.total, reading.used + held, self.name
            )
        return reading

    def process_bytes(self, device: str, pids: Iterable[int]) -> int | None:
        alive = [pid for pid in pids if _alive(pid)]
        self.asked.append(device)
        with self.lock:
            self.server_pids.update(alive)
        return self.server_bytes.get(device, 0) if alive else None


def _alive(pid: int) -> bool:
    """Whether `pid` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
