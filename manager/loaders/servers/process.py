"""One server child process: started in its own session, tied to the manager's life, its
output read line by line, its exit noticed, and a stop that leaves nothing of its group.

Use it on the event loop's thread; blocking reads of ``/proc`` go through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence

import psutil

from .group import group_members, running, server_processes, signal_all
from .output import TAIL_LINES, LineSplitter
from .parent_death import tied_to_parent
from .registry import LIVE_SERVERS, LiveServers

logger = logging.getLogger(__name__)


def describe_exit(code: int | None) -> str:
    """``exit code 3``, or ``signal SIGKILL`` for a negative code."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


class _ServerProtocol(asyncio.SubprocessProtocol):
    def __init__(
        self, on_line: Callable[[str], None], tail: deque[str], secrets: Sequence[str]
    ) -> None:
        self._on_line = on_line
        self._tail = tail
        self._splitter = LineSplitter(secrets)
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self.new_output = asyncio.Event()
        self.exited_at: float | None = None

    def _deliver(self, lines: list[str]) -> None:
        for line in lines:
            self._tail.append(line)
            try:
                self._on_line(line)
            except Exception:  # a subscriber's bug must not stop the output being read
                logger.exception("server output callback failed")
        if lines:
            self.new_output.set()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._deliver(self._splitter.feed(data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._deliver(self._splitter.feed(b"", final=True))
        if not self.output_closed.done():
            self.output_closed.set_result(None)

    def process_exited(self) -> None:
        self.exited_at = time.monotonic()
        if not self.exited.done():
            self.exited.set_result(None)


class ServerProcess:
    """One server child in its own process group: its output, its exit, and a certain stop.

    Use ``await ServerProcess.start(...)`` on the event loop's thread.
    """

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: _ServerProtocol,
        tail: deque[str],
        registry: LiveServers,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._tail = tail
        self._registry = registry
        self.pid: int = transport.get_pid()
        self._known: dict[int, psutil.Process] = {}  # every process seen in the server's tree
        self._stopping = False
        self._stopped = False

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        on_line: Callable[[str], None],
        stop_timeout_s: float = 30.0,
        secrets: Sequence[str] = (),
        registry: LiveServers = LIVE_SERVERS,
    ) -> ServerProcess:
        """Start `argv` with exactly `env` in a new session; every output line (stdout and
        stderr) goes to `on_line` on the loop's thread, and into `tail`, with each of `secrets`
        masked (``***``). The server counts in `registry` until it is stopped.
        Raises FileNotFoundError for a missing program."""
        loop = asyncio.get_running_loop()
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        if shutil.which(argv[0], path=env.get("PATH")) is None and not os.access(argv[0], os.X_OK):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
        await registry.prepare()
        tied, pre_exec = await asyncio.to_thread(tied_to_parent, argv)
        transport, protocol = await loop.subprocess_exec(
            lambda: _ServerProtocol(on_line, tail, secrets),
            *tied,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=pre_exec,
        )
        server = cls(transport, protocol, tail, registry)
        registry.add(server.pid, stop_timeout_s)
        return server

    @property
    def pgid(self) -> int:
        return self.pid  # a new session's leader leads its group

    @property
    def returncode(self) -> int | None:
        """The leader's exit code once it exited (negative: killed by that signal)."""
        return self._transport.get_returncode()

    @property
    def running(self) -> bool:
        return self.returncode is None

    @property
    def tail(self) -> tuple[str, ...]:
        """The last lines of output (up to TAIL_LINES)."""
        return tuple(self._tail)

    @property
    def exited(self) -> asyncio.Future[None]:
        """Done once the leader exited."""
        return self._protocol.exited

    @property
    def exited_at(self) -> float | None:
        """``time.monotonic()`` when the loop learnt that the leader exited."""
        return self._protocol.exited_at

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for (the exit that follows is no crash)."""
        return self._stopping

    @property
    def new_output(self) -> asyncio.Event:
        """Set whenever a line arrives; clear it to wait for the next one."""
        return self._protocol.new_output

    def pids(self, *, strays: bool = True) -> list[int]:
        """The server's processes that run: its group and, with `strays`, descendants that left
        the group (blocking: reads /proc). Empty once the leader exited."""
        if not self.running:
            return []
        procs = server_processes(self.pid, strays=strays)
        self._known.update((p.pid, p) for p in procs)
        return sorted(p.pid for p in procs)

    def _left(self) -> list[psutil.Process]:
        """Processes of the server that still run, the leader included (blocking)."""
        found = {p.pid: p for p in group_members(self.pgid)}
        found.update(self._known)
        return [p for p in found.values() if running(p)]

    async def _any_left(self) -> bool:
        return bool(await asyncio.to_thread(self._left))

    async def stop(self, timeout_s: float) -> int | None:
        """SIGTERM the group, wait up to `timeout_s` for it to go, then SIGKILL what is left.

        Idempotent; also cleans up the workers of a server that died on its own. Returns the
        leader's exit code.
        """
        if self._stopped:
            return self.returncode
        self._stopping = True
        try:
            await self._stop(timeout_s)
        except BaseException:  # cancelled (the loop is closing): no time to be polite
            self.kill_now()
            raise
        return self.returncode

    async def _stop(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # The processes seen so far get SIGTERM at once; a scan for others would delay it.
        signal_all(self.pgid, self._known.values(), signal.SIGTERM)
        await _wait_done(self.exited, max(0.0, deadline - loop.time()))
        while loop.time() < deadline and await self._any_left():  # noqa: ASYNC110 - the OS
            await asyncio.sleep(0.02)  # announces no group's last exit: poll it
        # The leader has gone (or ran out of time): whatever of its group is left is a leftover.
        left = await asyncio.to_thread(self._left)
        signal_all(self.pgid, left, signal.SIGKILL)
        await _wait_done(self.exited, 5.0)
        end = loop.time() + 2.0  # SIGKILLed processes go within milliseconds: memory shows free
        while loop.time() < end and await self._any_left():  # noqa: ASYNC110 - as above
            await asyncio.sleep(0.01)
        await _wait_done(self._protocol.output_closed, 0.5)  # the last lines, into the tail
        self._forget()

    def kill_now(self) -> None:
        """SIGKILL the whole group at once, without waiting (blocking: reads /proc briefly)."""
        if self._stopped:
            return
        self._stopping = True
        signal_all(self.pgid, self._left(), signal.SIGKILL)
        self._forget()

    def _forget(self) -> None:
        self._stopped = True
        self._registry.remove(self.pid)
        self._transport.close()


async def _wait_done(future: asyncio.Future[None], timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), timeout_s)
