"""A running server as the manager's "model": where to reach it, and what it holds."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from vramdeck.manager.memory import MemoryProbe

from .health import http_status
from .process import ServerProcess

#: A reading this fresh is reused (the manager reads the footprint right after the load).
FRESH_S = 0.25


class ServerMemory:
    """What a server's process tree holds on its device, read through the manager's probe."""

    def __init__(self, process: ServerProcess, probe: MemoryProbe, device: str) -> None:
        self._process = process
        self._probe = probe
        self._device = device
        self._lock = threading.Lock()
        self._last: tuple[float, int | None] | None = None  # (when, bytes)

    def measure(self, *, strays: bool = True) -> int | None:
        """Read it now (blocking); None once the server has exited or where the probe cannot
        see its processes. Without `strays`, only the group is counted (ten times cheaper)."""
        pids = self._process.pids(strays=strays)
        # 0 from a running server means the probe cannot see it (e.g. NVML in a PID namespace).
        nbytes = (self._probe.process_bytes(self._device, pids) or None) if pids else None
        with self._lock:
            self._last = (time.monotonic(), nbytes)
        return nbytes

    def current(self) -> int | None:
        """The last reading if it is fresh (FRESH_S), else a new one (blocking)."""
        with self._lock:
            last = self._last
        if last is not None and time.monotonic() - last[0] < FRESH_S:
            return last[1]
        return self.measure()


@dataclass(eq=False)
class ServerHandle:
    """A running inference server, the manager's "model" for a server framework.

    Attributes
    ----------
    framework : str
        The option's framework (vllm, sglang, …).
    model : str
        The model name to send in OpenAI-compatible requests.
    host, port : str, int
        Where the server listens (always loopback).
    pid : int
        The server's process id; it leads its own process group.
    process : ServerProcess
        The child process: its output, exit and stop.
    memory : ServerMemory
        What its processes hold on its device.
    """

    framework: str
    model: str
    host: str
    port: int
    pid: int
    health_path: str = "/health"
    stop_timeout_s: float = 30.0
    process: ServerProcess = field(kw_only=True, repr=False)
    memory: ServerMemory = field(kw_only=True, repr=False)

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self.process.running

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def last_output(self) -> tuple[str, ...]:
        """The last lines the server printed (secrets masked)."""
        return self.process.tail

    async def health_status(self, timeout_s: float = 2.0) -> int | None:
        """The HTTP status of the health endpoint now, or None when nothing answers."""
        return await http_status(self.url + self.health_path, timeout_s)

    async def health(self, timeout_s: float = 2.0) -> bool:
        """Whether the server's health endpoint answers 200 now."""
        return self.running and await self.health_status(timeout_s) == 200
