"""Inference servers as models: vLLM and SGLang (and plug-ins) run as managed child processes.

Loading starts the server bound to 127.0.0.1 on a free port, passes every line it prints to the
manager's events (the values of secret variables masked), and waits until its health endpoint
answers. The "model" is a `ServerHandle`:
the OpenAI-compatible base URL, the model name, the pid and an async ``health()``. The memory is
what the server's process tree holds on the device (NVML per process; RSS on the host), re-read
while it runs. Unloading stops the whole process group: SIGTERM, ``stop_timeout_s``, SIGKILL.

`load` and `unload` are coroutines, so a server that takes minutes to start never blocks the
device's worker thread, and the server is started from the event loop's thread, whose life
bounds the server's (``PR_SET_PDEATHSIG``, see `server_process`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from vramdeck.manager.config import GIB, ModelConfig
from vramdeck.manager.logs import redact, secret_values
from vramdeck.manager.memory import MemoryProbe, SystemProbe, device_index, is_cuda

from .base import AsyncLoader, LoadContext, LoaderUnavailable
from .server_process import (
    LOOPBACK,
    ServerProcess,
    describe_exit,
    free_port,
    http_status,
    reap_orphans_once,
)

#: Placeholders a ``server_command`` may use.
PLACEHOLDERS = ("model_id", "host", "port", "fraction")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
#: Config quantization values that mean bitsandbytes loading in vLLM and SGLang.
_BITSANDBYTES = frozenset({"4bit", "8bit", "int4", "int8", "nf4", "bnb", "bitsandbytes"})
_NO_QUANTIZATION = frozenset({"", "none", "no", "false"})
_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)%")
#: Flags that set where a server listens, and the only hosts a server_command may pass them.
_HOST_FLAGS = frozenset({"--host", "--hostname"})
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_PORT_TAKEN = re.compile(r"address already in use|errno 98", re.IGNORECASE)
#: A footprint this fresh is returned as is (the manager reads it right after `load`).
_FRESH_S = 0.25


class ServerStartError(RuntimeError):
    """A server exited or timed out before it was ready; nothing of it is left running.

    The message is one line ending with the last lines of output; `last_output` has more. Both
    have the values of secret variables masked (see `ServerLoader.secrets`).
    """

    def __init__(self, message: str, *, exit_code: int | None, last_output: tuple[str, ...]):
        super().__init__(message)
        self.exit_code = exit_code
        self.last_output = last_output

    @property
    def port_taken(self) -> bool:
        return any(_PORT_TAKEN.search(line) for line in self.last_output)


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
    """

    framework: str
    model: str
    host: str
    port: int
    pid: int
    health_path: str = "/health"
    stop_timeout_s: float = 30.0
    _process: ServerProcess | None = field(default=None, repr=False)
    _measured: tuple[float, int | None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"{self.url}/v1"

    @property
    def process(self) -> ServerProcess:
        assert self._process is not None, "a ServerHandle is made by ServerLoader.load"
        return self._process

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

    async def health(self, timeout_s: float = 2.0) -> bool:
        """Whether the server's health endpoint answers 200 now."""
        if not self.running:
            return False
        return await http_status(self.host, self.port, self.health_path, timeout_s) == 200


def memory_fraction(vram_bytes: int, total_bytes: int) -> float | None:
    """`vram_bytes` as a share of the device's `total_bytes`, rounded up to 0.001.

    None when either is unknown (0). ValueError when the model needs more than the device has.
    """
    if vram_bytes <= 0 or total_bytes <= 0:
        return None
    if vram_bytes > total_bytes:
        raise ValueError(
            f"vram_gb {vram_bytes / GIB:.2f} is more than the device's {total_bytes / GIB:.2f} GiB"
        )
    return min(1.0, math.ceil(vram_bytes / total_bytes * 1000) / 1000)


def quantization_value(quantization: str | None) -> str | None:
    """The value of the servers' ``--quantization`` flag for the config's `quantization`."""
    if quantization is None or quantization.strip().lower() in _NO_QUANTIZATION:
        return None
    q = quantization.strip().lower()
    return "bitsandbytes" if q in _BITSANDBYTES else q


@dataclass(frozen=True)
class CommandValues:
    """What a server command is built from.

    `vram_bytes` and `total_bytes` (the option's estimate and the device's total, 0 when unknown)
    say why `fraction` is None.
    """

    model_id: str
    host: str
    port: int
    fraction: float | None
    device: str
    vram_bytes: int = 0
    total_bytes: int = 0

    def substitute(self, argv: tuple[str, ...] | list[str]) -> list[str]:
        """`argv` with ``{model_id}``, ``{host}``, ``{port}`` and ``{fraction}`` filled in.

        Other braces (a JSON argument, say) are left as they are.
        """

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "fraction":
                if self.fraction is None:
                    raise ValueError(f"server_command uses {{fraction}} but {self._no_fraction()}")
                return f"{self.fraction:g}"
            return str(getattr(self, name))

        return [_PLACEHOLDER.sub(fill, arg) for arg in argv]

    def _no_fraction(self) -> str:
        """Why there is no `fraction`."""
        if self.vram_bytes <= 0:
            return "the option has no vram_gb"
        return f"the total memory of {self.device} could not be read"


class ServerLoader(AsyncLoader):
    """Base of loaders whose models are inference servers in child processes.

    Subclasses name their `frameworks`, say whether the server is `installed`, and build its
    `default_command`. An option's ``server_command`` (with placeholders) replaces the default;
    ``server_env`` is added to the environment.

    Parameters
    ----------
    probe : MemoryProbe, optional
        Reads what the server's processes hold (default: the system's probe, made on first use).
    """

    frameworks: ClassVar[tuple[str, ...]] = ()
    holds_device_memory: ClassVar[bool] = True
    #: The manager re-reads `footprint` while the server runs (servers grow and shrink).
    live_footprint: ClassVar[bool] = True
    display_name: ClassVar[str] = "server"
    install_hint: ClassVar[str] = ""
    health_path: ClassVar[str] = "/health"

    def __init__(self, probe: MemoryProbe | None = None) -> None:
        self._probe = probe
        self._probe_lock = threading.Lock()

    @property
    def probe(self) -> MemoryProbe:
        with self._probe_lock:
            if self._probe is None:
                self._probe = SystemProbe.detect()
            return self._probe

    # ----------------------------------------------------------------- what to run

    def installed(self) -> bool:
        """Whether the server's default command can run here."""
        return False

    def default_command(self, option: ModelConfig, values: CommandValues) -> list[str]:
        """The command that serves `option` when it gives no ``server_command``."""
        raise LoaderUnavailable(f"{self.display_name} needs server_command in the option")

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        if os.name != "posix":
            return "inference servers are managed on Linux and macOS only (process groups)"
        if option.server_command:
            return _command_problem(option.server_command)
        if not self.installed():
            hint = f": {self.install_hint}" if self.install_hint else ""
            return f"{self.display_name} is not installed here{hint} (or give server_command)"
        return None

    def command(self, option: ModelConfig, device: str, port: int, total_bytes: int) -> list[str]:
        """The argv that starts `option`'s server on `port` (`total_bytes`: the device's)."""
        values = CommandValues(
            model_id=option.resolved_model_id(),
            host=LOOPBACK,
            port=port,
            fraction=memory_fraction(option.vram_bytes, total_bytes),
            device=device,
            vram_bytes=option.vram_bytes,
            total_bytes=total_bytes,
        )
        if option.server_command:
            return values.substitute(option.server_command)
        return self.default_command(option, values)

    def environment(self, option: ModelConfig, device: str) -> dict[str, str]:
        """The server's environment: ours, unbuffered output, the placed GPU, ``server_env``."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if is_cuda(device):
            # The manager's cuda:N is NVML's N, which counts in PCI bus order.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            env["CUDA_VISIBLE_DEVICES"] = str(device_index(device))
        env.update(option.server_env)
        return env

    def secrets(self, option: ModelConfig) -> list[str]:
        """What is masked in the server's output: the values of the variables whose names mark
        them as secrets (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL), ours and ``server_env``'s."""
        return secret_values(os.environ, option.server_env)

    # ----------------------------------------------------------------- the loader protocol

    async def load(self, option: ModelConfig, ctx: LoadContext) -> ServerHandle:
        """Start the server and wait until it is ready; ServerStartError if it never is."""
        reason = self.unavailable_reason(option)
        if reason:
            raise LoaderUnavailable(reason)
        await reap_orphans_once()
        total = (
            ctx.device_total_bytes or (await asyncio.to_thread(self.probe.read, ctx.device)).total
        )
        env = self.environment(option, ctx.device)
        secrets = self.secrets(option)
        for attempt in range(2):
            port = free_port()
            argv = self.command(option, ctx.device, port, total)
            try:
                return await self._start(option, ctx, argv, env, port, secrets)
            except ServerStartError as exc:
                if attempt or not exc.port_taken:
                    raise
                ctx.output(f"[vramdeck] port {port} was taken meanwhile; trying another")
        raise AssertionError("unreachable")

    async def _start(
        self,
        option: ModelConfig,
        ctx: LoadContext,
        argv: list[str],
        env: dict[str, str],
        port: int,
        secrets: list[str],
    ) -> ServerHandle:
        ctx.progress(0.0, f"starting {self.display_name} on port {port}")
        starting = True

        def on_line(line: str) -> None:
            ctx.output(line)
            if starting:
                _report_percent(ctx.progress, line)

        try:
            process = await ServerProcess.start(
                argv, env, on_line=on_line, stop_timeout_s=option.stop_timeout_s, secrets=secrets
            )
        except OSError as exc:  # FileNotFoundError, PermissionError
            raise ServerStartError(
                redact(f"cannot start {argv[0]}: {exc.strerror or exc}", secrets),
                exit_code=None,
                last_output=(),
            ) from exc
        handle = ServerHandle(
            framework=option.framework,
            model=option.resolved_model_id(),
            host=LOOPBACK,
            port=port,
            pid=process.pid,
            health_path=self.health_path,
            stop_timeout_s=option.stop_timeout_s,
            _process=process,
        )
        try:
            await self._wait_ready(handle, option)
            # The group only: strays (workers that left it) cost more to find, and the
            # housekeeper's next reading, half a second on, finds them.
            nbytes = await asyncio.to_thread(self._measure, handle, ctx.device, strays=False)
        except BaseException:
            await process.stop(option.stop_timeout_s)
            raise
        finally:
            starting = False
        handle._measured = (time.monotonic(), nbytes)
        ctx.progress(1.0, "ready")
        return handle

    async def _wait_ready(self, handle: ServerHandle, option: ModelConfig) -> None:
        """Poll the health endpoint, at once whenever the server prints, else with back-off."""
        process = handle.process
        loop = asyncio.get_running_loop()
        deadline = loop.time() + option.startup_timeout_s
        delay = 0.005
        while True:
            process.new_output.clear()
            polled = loop.time()
            remaining = deadline - polled
            if not process.running:
                await self._failed(
                    handle, option, f"exited with {describe_exit(process.returncode)}"
                )
            if await self._answers(handle, min(5.0, remaining)):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                await self._failed(
                    handle,
                    option,
                    f"did not answer {self.health_path} within "
                    f"startup_timeout_s={option.startup_timeout_s:g} s",
                )
            printed = asyncio.ensure_future(process.new_output.wait())
            wakers: set[asyncio.Future[Any]] = {printed, process.exited}
            await asyncio.wait(
                wakers,
                timeout=min(delay, remaining),
                return_when=asyncio.FIRST_COMPLETED,
            )
            printed.cancel()
            delay = min(delay * 1.5, 0.5)
            # A chatty server must not turn polling into a busy loop: 5 ms between polls at least.
            await asyncio.sleep(max(0.0, polled + 0.005 - loop.time()))

    async def _answers(self, handle: ServerHandle, timeout_s: float) -> bool:
        """Whether /health answers 200; gives up at once if the server exits meanwhile."""
        poll = asyncio.ensure_future(
            http_status(handle.host, handle.port, self.health_path, timeout_s)
        )
        wakers: set[asyncio.Future[Any]] = {poll, handle.process.exited}
        await asyncio.wait(wakers, return_when=asyncio.FIRST_COMPLETED)
        if not poll.done():
            poll.cancel()
            return False
        return poll.result() == 200

    async def _failed(self, handle: ServerHandle, option: ModelConfig, what: str) -> NoReturn:
        process = handle.process
        await process.stop(option.stop_timeout_s)  # also collects its last lines
        lines = process.tail
        summary = " | ".join(line[:200] for line in lines[-5:]) or "(no output)"
        raise ServerStartError(
            f"{self.display_name} {what} before it was ready; last output: {summary}",
            exit_code=process.returncode,
            last_output=lines,
        )

    def _measure(self, handle: ServerHandle, device: str, *, strays: bool = True) -> int | None:
        pids = handle.process.pids(strays=strays)
        if not pids:
            return None
        # 0 from a running server means the probe cannot see it (e.g. NVML in a PID namespace).
        return self.probe.process_bytes(device, pids) or None

    def footprint(self, model: ServerHandle, device: str) -> int | None:
        """What the server's process tree holds on `device` now (None: cannot tell)."""
        measured = model._measured
        if measured is not None and time.monotonic() - measured[0] < _FRESH_S:
            return measured[1]
        nbytes = self._measure(model, device)
        model._measured = (time.monotonic(), nbytes)
        return nbytes

    async def unload(self, model: ServerHandle, device: str) -> None:
        """Stop the server's process group: SIGTERM, wait ``stop_timeout_s``, SIGKILL."""
        await model.process.stop(model.stop_timeout_s)

    def check(self, model: ServerHandle) -> tuple[int | None, tuple[str, ...]] | None:
        """None while the server runs (or is stopping); (exit code, last lines) once it died."""
        process = model.process
        if process.running or process.stopping:
            return None
        return process.returncode, process.tail


def _report_percent(progress: Callable[[float | None, str], None], line: str) -> None:
    """Turn a progress bar's line (``Loading shards:  50% …``) into a progress report."""
    match = _PERCENT.search(line)
    if match is not None and float(match.group(1)) <= 100:
        progress(float(match.group(1)) / 100, line[:120])


def _command_problem(argv: tuple[str, ...]) -> str | None:
    missing = [p for p in ("{host}", "{port}") if not any(p in arg for arg in argv)]
    if missing:
        why = {
            "{host}": "the server must listen on loopback only (a server left to choose, like "
            "vLLM, listens on every interface, without authentication)",
            "{port}": "the manager picks a free port for each start",
        }
        return f"server_command must pass {' and '.join(missing)}: " + "; ".join(
            why[p] for p in missing
        )
    for host in _hosts_passed(argv):
        if host != "{host}" and host.strip("[]").lower() not in _LOOPBACK_NAMES:
            return (
                f"server_command passes the host {host!r}: the server must listen on loopback "
                "only (pass {host}, or 127.0.0.1, localhost or ::1)"
            )
    program = argv[0]
    if shutil.which(program) is None and not (
        os.path.isfile(program) and os.access(program, os.X_OK)
    ):
        return f"server_command's program {program!r} was not found"
    return None


def _hosts_passed(argv: tuple[str, ...]) -> list[str]:
    """The values of every ``--host``/``--hostname`` flag in `argv` (``--host X``, ``--host=X``)."""
    hosts = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag not in _HOST_FLAGS:
            continue
        if eq:
            hosts.append(value)
        elif i + 1 < len(argv):
            hosts.append(argv[i + 1])
    return hosts


def _common_flags(option: ModelConfig, values: CommandValues) -> list[str]:
    flags = ["--host", values.host, "--port", str(values.port)]
    if not option.allow_pickle:  # pickle checkpoints (.bin, .pt) can run code when read
        flags += ["--load-format", "safetensors"]
    quantization = quantization_value(option.quantization)
    if quantization:
        flags += ["--quantization", quantization]
    if option.dtype != "auto":
        flags += ["--dtype", option.dtype]
    if option.trust_remote_code:
        flags.append("--trust-remote-code")
    return flags


class VllmLoader(ServerLoader):
    """vLLM's OpenAI-compatible server (``vllm serve``)."""

    frameworks: ClassVar[tuple[str, ...]] = ("vllm",)
    display_name: ClassVar[str] = "vLLM"
    install_hint: ClassVar[str] = "pip install vllm"

    def installed(self) -> bool:
        return shutil.which("vllm") is not None or importlib.util.find_spec("vllm") is not None

    def default_command(self, option: ModelConfig, values: CommandValues) -> list[str]:
        if shutil.which("vllm") is not None:
            argv = ["vllm", "serve", values.model_id]
        else:  # importable, but its script is not on PATH (e.g. a venv that is not activated)
            argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
            argv += ["--model", values.model_id]
        argv += _common_flags(option, values)
        if values.fraction is not None and is_cuda(values.device):
            argv += ["--gpu-memory-utilization", f"{values.fraction:g}"]
        return argv


class SglangLoader(ServerLoader):
    """SGLang's server (``python -m sglang.launch_server``)."""

    frameworks: ClassVar[tuple[str, ...]] = ("sglang",)
    display_name: ClassVar[str] = "SGLang"
    install_hint: ClassVar[str] = 'pip install "sglang[all]"'

    def installed(self) -> bool:
        return importlib.util.find_spec("sglang") is not None

    def default_command(self, option: ModelConfig, values: CommandValues) -> list[str]:
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", values.model_id]
        argv += _common_flags(option, values)
        if values.fraction is not None:
            argv += ["--mem-fraction-static", f"{values.fraction:g}"]
        return argv


__all__ = [
    "PLACEHOLDERS",
    "CommandValues",
    "ServerHandle",
    "ServerLoader",
    "ServerStartError",
    "SglangLoader",
    "VllmLoader",
    "memory_fraction",
    "quantization_value",
]
