"""Inference servers as models: the loader base that starts, watches, measures and stops them.

Loading starts the server bound to 127.0.0.1 on a free port, with a minimal environment (see
`environment`), passes every line it prints to the manager's events (the values of secret
variables masked), and waits until its health endpoint answers. The "model" is a `ServerHandle`.
The memory is what the server's process tree holds on the device, read through the manager's
probe (``LoadContext.probe``) and re-read while it runs. Unloading stops the whole process group:
SIGTERM, ``stop_timeout_s``, SIGKILL.

`load` and `unload` are coroutines, so a server that takes minutes to start never blocks the
device's worker thread, and the server is started from the event loop's thread, whose life
bounds the server's (see `parent_death`).

A server whose option opts in (``sleep_level`` 1 or 2, or ``inference.server_sleep_level``,
passed in ``LoadContext.extra[SERVER_SLEEP_LEVEL]``) starts in its framework's sleep mode, and
can then be put to sleep (`suspend`) instead of stopped, and woken (`resume`) instead of started
(see `sleep` and `sleeper`).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.loaders.base import AsyncLoader, LoadContext, LoaderUnavailable
from vramdeck.manager.logs import redact
from vramdeck.manager.memory import is_cuda
from vramdeck.manager.residency import Residency

from .commands import LOOPBACK, CommandValues, command_problem, free_port
from .environment import server_environment, server_secrets
from .handle import ServerHandle, ServerMemory
from .placement import server_devices
from .process import ServerProcess, describe_exit
from .sleep import SleepApi, SleepError, SleepLevel, SleepReport, WakeReport
from .sleeper import put_to_sleep, wake_up, why_not_sleep

#: The key of `LoadContext.extra` that carries ``inference.server_sleep_level``.
SERVER_SLEEP_LEVEL = "server_sleep_level"

_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)%")
_PORT_TAKEN = re.compile(r"address already in use|errno 98", re.IGNORECASE)


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


class ServerLoader(AsyncLoader):
    """Base of loaders whose models are inference servers in child processes.

    Subclasses name their `frameworks`, say whether the server is `installed`, and build its
    `default_command`. An option's ``server_command`` (with placeholders) replaces the default;
    ``server_env`` and ``inherit_env`` shape the environment.
    """

    frameworks: ClassVar[tuple[str, ...]] = ()
    holds_device_memory: ClassVar[bool] = True
    #: The manager re-reads `footprint` while the server runs (servers grow and shrink).
    live_footprint: ClassVar[bool] = True
    display_name: ClassVar[str] = "server"
    install_hint: ClassVar[str] = ""
    health_path: ClassVar[str] = "/health"
    #: The framework's sleep and wake routes; None: its servers are always stopped.
    sleep_api: ClassVar[SleepApi | None] = None
    #: An eviction puts a server that `can_suspend` to sleep instead of stopping it.
    suspends_to: ClassVar[Residency] = Residency.SLEEPING

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
            return command_problem(option.server_command)
        if not self.installed():
            hint = f": {self.install_hint}" if self.install_hint else ""
            return f"{self.display_name} is not installed here{hint} (or give server_command)"
        return None

    def command(self, option: ModelConfig, device: str, port: int, total_bytes: int) -> list[str]:
        """The argv that starts `option`'s server on `port` (`total_bytes`: the device's)."""
        values = CommandValues.for_option(option, device, port, total_bytes)
        if option.server_command:
            return values.substitute(option.server_command)
        return self.default_command(option, values)

    def environment(self, option: ModelConfig, device: str) -> dict[str, str]:
        """The server's whole environment (see `environment.server_environment`)."""
        return server_environment(option, device, os.environ)

    def devices(self, option: ModelConfig, device: str) -> tuple[str, ...]:
        """The devices `option`'s server occupies when placed on `device` (see `placement`)."""
        return server_devices(option, device)

    def secrets(self, option: ModelConfig) -> list[str]:
        """What is masked in the server's output (see `environment.server_secrets`)."""
        return server_secrets(option, os.environ)

    # ----------------------------------------------------------------- the loader protocol

    async def load(self, option: ModelConfig, ctx: LoadContext) -> ServerHandle:
        """Start the server and wait until it is ready; ServerStartError if it never is."""
        reason = self.unavailable_reason(option)
        if reason:
            raise LoaderUnavailable(reason)
        total = ctx.device_total_bytes
        if not total:
            total = (await asyncio.to_thread(ctx.probe.read, ctx.device)).total
        level = self.sleep_level(option, ctx)
        env = self.environment(option, ctx.device)
        occupied = self.devices(option, ctx.device)
        if len(occupied) > 1 and "CUDA_VISIBLE_DEVICES" not in option.server_env:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(d.partition(":")[2] for d in occupied)
        if self.sleep_api is not None and level:
            env.update(self.sleep_api.start_env(level))
            env.update(option.server_env)  # still the last word
        secrets = self.secrets(option)
        for attempt in range(2):
            port = free_port()
            argv = self.command(option, ctx.device, port, total)
            if self.sleep_api is not None:
                argv += [f for f in self.sleep_api.start_flags(level) if f not in argv]
            try:
                handle = await self._start(option, ctx, argv, env, port, secrets)
            except ServerStartError as exc:
                if attempt or not exc.port_taken:
                    raise
                ctx.output(f"[vramdeck] port {port} was taken meanwhile; trying another")
                continue
            handle.sleep_level = level
            handle.sleep_api = self.sleep_api if level else None
            handle.signature = option.load_signature()
            handle.wake_timeout_s = option.startup_timeout_s
            return handle
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
        # No fraction until the server prints one: how long a start takes is not known here.
        ctx.progress(None, f"starting {self.display_name} on port {port}")
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
            process=process,
            memory=ServerMemory(process, ctx.probe, *self.devices(option, ctx.device)),
        )
        ctx.progress(None, f"waiting for the health check ({self.health_path})")
        try:
            await self._wait_ready(handle, option)
            # The group only: strays (workers that left it) cost more to find, and the
            # housekeeper's next reading, half a second on, finds them.
            await asyncio.to_thread(handle.memory.measure, strays=False)
        except BaseException:
            await process.stop(option.stop_timeout_s)
            raise
        finally:
            starting = False
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
        poll = asyncio.ensure_future(handle.health_status(timeout_s))
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

    def footprint(self, model: ServerHandle, device: str) -> int | None:
        """What the server's process tree holds on its device now (None: cannot tell)."""
        return model.memory.current()

    async def unload(self, model: ServerHandle, device: str) -> None:
        """Stop the server's process group: SIGTERM, wait ``stop_timeout_s``, SIGKILL."""
        await model.process.stop(model.stop_timeout_s)

    # ----------------------------------------------------------------- sleep instead of stop

    def sleep_level(self, option: ModelConfig, ctx: LoadContext) -> SleepLevel:
        """What an eviction of `option`'s server will do: the option's ``sleep_level``, else
        ``inference.server_sleep_level``; STOP for a framework that cannot sleep, for the
        default command off CUDA (vLLM's and SGLang's sleep modes need a GPU), and for an
        option whose server kept its memory through a sleep before."""
        chosen = option.sleep_level
        if chosen is None:
            chosen = int(ctx.extra.get(SERVER_SLEEP_LEVEL, 0) or 0)
        if self.sleep_api is None or self.leaks_on_sleep(option):
            return SleepLevel.STOP
        if not option.server_command and not is_cuda(ctx.device):
            return SleepLevel.STOP
        return SleepLevel(chosen)

    @property
    def _sleep_leaks(self) -> set[tuple[object, ...]]:
        leaks: set[tuple[object, ...]] = vars(self).setdefault("_leaked_on_sleep", set())
        return leaks

    def leaks_on_sleep(self, option: ModelConfig) -> bool:
        """Whether `option`'s server kept its memory (or failed) when put to sleep before: its
        next servers start without sleep mode and are stopped on eviction."""
        return option.load_signature() in self._sleep_leaks

    def can_suspend(self, model: ServerHandle) -> bool:
        """Whether an eviction should `suspend` the server (else `unload` it)."""
        return why_not_sleep(model) is None and model.signature not in self._sleep_leaks

    def would_suspend(self, option: ModelConfig, ctx: LoadContext) -> bool:
        """A server started for `option` with `ctx` sleeps unless it starts without sleep mode."""
        return self.sleep_level(option, ctx) is not SleepLevel.STOP

    async def suspend(
        self,
        model: ServerHandle,
        ctx: LoadContext,
        *,
        verify_timeout_s: float = 5.0,
        drain_timeout_s: float | None = None,
    ) -> SleepReport:
        """Put the server to sleep instead of stopping it, once no request is in flight
        (``model.requests``); within `verify_timeout_s` the probe must see at least half of
        its memory free. One that fails or keeps its memory is stopped (``slept=False``) and
        remembered (`leaks_on_sleep`). SleepError when it cannot be tried (`can_suspend`)."""
        if model.signature in self._sleep_leaks:
            raise SleepError(f"{self.display_name} server of {model.model} leaked on sleep before")
        report = await put_to_sleep(
            model, verify_timeout_s=verify_timeout_s, drain_timeout_s=drain_timeout_s
        )
        if not report.slept:
            self._sleep_leaks.add(model.signature)
            ctx.output(
                f"[vramdeck] {report.reason}: stopped it, and will stop it, not put it to sleep, "
                "from now on"
            )
        return report

    async def resume(self, model: ServerHandle, ctx: LoadContext) -> WakeReport:
        """Wake a sleeping server and wait until it answers; what a load does for a server that
        sleeps. SleepError when it cannot (it exited while asleep, the wake failed): the server
        is stopped by then, and the manager starts it cold."""
        ctx.progress(0.0, f"waking {self.display_name} on port {model.port}")
        report = await wake_up(model)
        ctx.progress(1.0, "awake")
        return report

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
