"""A running server as the manager's "model": where to reach it, and what it holds."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from vramdeck.manager.memory import MemoryProbe

from .health import http_status
from .process import ServerProcess
from .requests import InFlight
from .sleep import SleepApi, SleepLevel, SleepState

#: A reading this fresh is reused (the manager reads the footprint right after the load).
FRESH_S = 0.25


class ServerMemory:
    """What a server's process tree holds on its devices (several with tensor parallelism),
    read through the manager's probe; `measure` gives the total, `by_device` each one's part."""

    def __init__(
        self, process: ServerProcess, probe: MemoryProbe, device: str, *others: str
    ) -> None:
        self._process = process
        self._probe = probe
        self.devices = (device, *others)
        self._lock = threading.Lock()
        self._last: tuple[float, int | None] | None = None  # (when, bytes)
        self._by_device: dict[str, int] = {}

    def measure(self, *, strays: bool = True) -> int | None:
        """Read it now (blocking); None once the server has exited or where the probe cannot
        see its processes. Without `strays`, only the group is counted (ten times cheaper)."""
        pids = self._process.pids(strays=strays)
        by_device: dict[str, int] = {}
        for device in self.devices if pids else ():
            # 0 from a running server: the probe cannot see it (e.g. NVML in a PID namespace).
            by_device[device] = self._probe.process_bytes(device, pids) or 0
        nbytes = sum(by_device.values()) or None
        with self._lock:
            self._last = (time.monotonic(), nbytes)
            self._by_device = by_device if nbytes else {}
        return nbytes

    def by_device(self) -> dict[str, int]:
        """Device → bytes at the last reading; empty when it saw nothing."""
        with self._lock:
            return dict(self._by_device)

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
    sleep_level : SleepLevel
        What an eviction does to it (fixed at its start: sleeping needs start flags).
    sleep_api : SleepApi | None
        Its framework's sleep and wake routes (None: it cannot sleep).
    state : SleepState
        Awake, sleeping, or on its way.
    requests : InFlight
        Requests in flight (the manager's leases), which a sleep waits for.
    signature : tuple
        The option's `load_signature()`, by which the loader remembers servers that leak.
    """

    framework: str
    model: str
    host: str
    port: int
    pid: int
    health_path: str = "/health"
    stop_timeout_s: float = 30.0
    wake_timeout_s: float = 600.0
    process: ServerProcess = field(kw_only=True, repr=False)
    memory: ServerMemory = field(kw_only=True, repr=False)
    sleep_level: SleepLevel = field(default=SleepLevel.STOP, kw_only=True)
    sleep_api: SleepApi | None = field(default=None, kw_only=True, repr=False)
    state: SleepState = field(default=SleepState.AWAKE, kw_only=True)
    requests: InFlight = field(default_factory=InFlight, kw_only=True, repr=False)
    signature: tuple[object, ...] = field(default=(), kw_only=True, repr=False)

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

    @property
    def asleep(self) -> bool:
        """Whether it sleeps (a load must wake it: `ServerLoader.resume`)."""
        return self.state is SleepState.ASLEEP
