"""What the NVML probe reads besides memory: utilisation and the processes on a device.

pynvml is replaced by a small module with NVML's calls (no NVIDIA device here); the processes
it reports are real: this test process, a real child of it, and a process that is not ours.
"""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from vramdeck.manager.memory import (
    HostProbe,
    NvmlProbe,
    SystemProbe,
    own_process_ids,
    read_activity,
)

MIB = 1024**2


class NVMLError(Exception):
    pass


def fake_pynvml(compute: list[Any], graphics: list[Any], utilisation: int | None) -> Any:
    module = types.ModuleType("pynvml")
    handle = object()

    def rates(h: object) -> Any:
        if utilisation is None:
            raise NVMLError("Not Supported")
        return types.SimpleNamespace(gpu=utilisation, memory=0)

    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    calls = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": lambda i: handle,
        "nvmlDeviceGetUUID": lambda h: "GPU-0000",
        "nvmlDeviceGetName": lambda h: b"Fake GPU",
        "nvmlDeviceGetUtilizationRates": rates,
        "nvmlDeviceGetComputeRunningProcesses": lambda h: compute,
        "nvmlDeviceGetGraphicsRunningProcesses": lambda h: graphics,
    }
    for name, fn in calls.items():
        setattr(module, name, fn)
    return module


def proc(pid: int, used: int | None) -> Any:
    return types.SimpleNamespace(pid=pid, usedGpuMemory=used)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A real child process (as a model server the manager started would be)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_other_processes_and_utilisation_are_read_and_ours_left_out(
    monkeypatch: pytest.MonkeyPatch, child: subprocess.Popen[bytes]
) -> None:
    other = psutil.Process(1)  # not ours: init, or the container's first process
    compute = [proc(psutil.Process().pid, 500 * MIB), proc(child.pid, 300 * MIB),
               proc(other.pid, 2048 * MIB)]  # fmt: skip
    graphics = [proc(other.pid, 2048 * MIB), proc(4_000_000, None)]  # the same PID twice
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(compute, graphics, 37))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    probe = SystemProbe(NvmlProbe())
    assert child.pid in own_process_ids()
    activity = read_activity(probe, "cuda:0")
    assert activity is not None and activity.utilisation == 37
    pids = [p.pid for p in activity.processes]
    assert pids == [other.pid, 4_000_000]  # this process and its child are vramdeck's
    first, gone = activity.processes
    assert first.name == other.name() and first.used == 2048 * MIB
    assert gone.used is None and gone.name == "not in this PID namespace"


def test_unsupported_utilisation_is_none_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], [], None))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    activity = read_activity(SystemProbe(NvmlProbe()), "cuda:0")
    assert activity is not None
    assert activity.utilisation is None and activity.processes == ()


def test_without_nvml_there_is_no_activity_to_read() -> None:
    probe = SystemProbe(None, HostProbe())
    assert read_activity(probe, "cpu") is None
    assert read_activity(HostProbe(), "cpu") is None  # a probe that is not the system's
