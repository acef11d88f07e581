"""Server child processes that never outlive the manager.

Each server starts in its own process group (session), so a stop reaches every worker it forked.
Three things make sure none is left behind:

- Linux: the child gets ``PR_SET_PDEATHSIG = SIGKILL`` (through ``setpriv --pdeathsig``, else a
  pre-exec function), so it dies with the thread that started it (the event loop's), even when
  the manager is SIGKILLed.
- A registry of live servers that an ``atexit`` hook stops (normal exit, Ctrl+C).
- A record of live servers in the state folder: a manager that finds the record of one whose
  manager died (its workers may have survived the server) kills what is left of its group.

Everything here that is async runs on the event loop's thread; blocking reads of ``/proc``
(psutil) go through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from vramdeck.manager.logs import redact, state_dir

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: Lines of a server's output kept for crash and failure reports.
TAIL_LINES = 50
#: Longest line kept; a progress bar without newlines must not grow without bound.
MAX_LINE = 2000
#: How long the atexit hook waits for servers to stop before it kills them.
EXIT_STOP_S = 10.0

_PR_SET_PDEATHSIG = 1
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """The child's pre-exec step: SIGKILL when the starting thread dies (Linux)."""
    prctl = _prctl
    if prctl is None:
        return None
    sigkill = int(signal.SIGKILL)

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv when it can set the parent-death signal (blocking, once)."""
    path = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if path is None:
        return None
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage.stdout else None


def _tied_to_parent(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """`argv` so that the child dies with the starting thread (Linux), and the pre-exec step.

    ``setpriv --pdeathsig KILL`` costs an exec; a pre-exec function costs a real fork of the
    manager's process (tens of ms once torch is loaded, with the event loop waiting), so it is
    only the fall-back.
    """
    setpriv = _setpriv()
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv], None
    return list(argv), _die_with_parent(os.getpid())


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` now (a server started right away will get it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


async def http_status(host: str, port: int, path: str, timeout_s: float = 2.0) -> int | None:
    """The HTTP status of ``GET path``, or None when nothing answers in time."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request.encode("ascii"))
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, EOFError):
        return None
    parts = status_line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped) does not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group(pgid: int) -> list[psutil.Process]:
    """The processes of group `pgid` (cheap: one getpgid per pid, no /proc files read)."""
    found = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid:
                found.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue
    return found


def server_processes(pid: int, *, strays: bool = True) -> list[psutil.Process]:
    """The server `pid`'s processes that run: its group, and with `strays` descendants that
    left the group (blocking: reads /proc; finding strays costs ten times more)."""
    found = {p.pid: p for p in _group(pid)}
    if strays:
        with contextlib.suppress(psutil.Error):
            found.update((c.pid, c) for c in psutil.Process(pid).children(recursive=True))
    return [p for p in found.values() if _running(p)]


def _signal_all(pgid: int, procs: Iterable[psutil.Process], sig: int) -> None:
    """Send `sig` to the group and to each of `procs` (some may have left the group).

    psutil checks that a process is still the one it was (pid and start time) before it
    signals, so a recycled pid is never hit.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def describe_exit(code: int | None) -> str:
    """``exit code 3``, or ``signal SIGKILL`` for a negative code."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


class _LineSplitter:
    """Bytes → lines: splits on \\n, \\r\\n and \\r (progress bars), drops ANSI colours, and
    masks `secrets` (see `manager.logs.redact`) before a line is cut to MAX_LINE."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._secrets = tuple(secrets)
        # What an endless line keeps back when it is cut: a secret it may end with the start of.
        self._hold = max(map(len, self._secrets), default=1) - 1

    def feed(self, data: bytes, *, final: bool = False) -> list[str]:
        text = self._partial + self._decoder.decode(data, final=final)
        *lines, self._partial = _LINE_BREAK.split(text)
        if final:
            lines.append(self._partial)
            self._partial = ""
        elif len(self._partial) > MAX_LINE:
            # Cut (and masked) now: a line without end must not grow without bound.
            masked = redact(self._partial, self._secrets)
            cut = max(0, len(masked) - self._hold)
            lines.append(masked[:cut])
            self._partial = masked[cut:]
        cleaned = (redact(_ANSI.sub("", line), self._secrets).rstrip()[:MAX_LINE] for line in lines)
        return [line for line in cleaned if line]


class _ServerProtocol(asyncio.SubprocessProtocol):
    def __init__(
        self, on_line: Callable[[str], None], tail: deque[str], secrets: Sequence[str]
    ) -> None:
        self._on_line = on_line
        self._tail = tail
        self._splitter = _LineSplitter(secrets)
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
            except Exception:
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
        self, transport: asyncio.SubprocessTransport, protocol: _ServerProtocol, tail: deque[str]
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._tail = tail
        self.pid: int = transport.get_pid()
        self._known: dict[int, psutil.Process] = {}  # every process seen in the server's tree
        self._stopping = False
        self._stopped = False
        self._recorded: asyncio.Future[None] | None = None

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        on_line: Callable[[str], None],
        stop_timeout_s: float = 30.0,
        secrets: Sequence[str] = (),
    ) -> ServerProcess:
        """Start `argv` in a new session; every output line (stdout and stderr) goes to
        `on_line` on the loop's thread, and into `tail`, with each of `secrets` masked (``***``).
        Raises FileNotFoundError for a missing program."""
        loop = asyncio.get_running_loop()
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        if shutil.which(argv[0], path=env.get("PATH")) is None and not os.access(argv[0], os.X_OK):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
        tied, pre_exec = await asyncio.to_thread(_tied_to_parent, argv)
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
        server = cls(transport, protocol, tail)
        _live.add(server.pid, stop_timeout_s)
        # Recorded while the server starts: the file write need not delay it.
        server._recorded = asyncio.ensure_future(asyncio.to_thread(_records.add, server.pid))
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
        found = {p.pid: p for p in _group(self.pgid)}
        found.update(self._known)
        return [p for p in found.values() if _running(p)]

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
        _signal_all(self.pgid, self._known.values(), signal.SIGTERM)
        await _wait_done(self.exited, max(0.0, deadline - loop.time()))
        while loop.time() < deadline and await self._any_left():
            await asyncio.sleep(0.02)
        # The leader has gone (or ran out of time): whatever of its group is left is a leftover.
        left = await asyncio.to_thread(self._left)
        _signal_all(self.pgid, left, signal.SIGKILL)
        await _wait_done(self.exited, 5.0)
        end = loop.time() + 2.0  # SIGKILLed processes go within milliseconds: memory shows free
        while loop.time() < end and await self._any_left():
            await asyncio.sleep(0.01)
        await _wait_done(self._protocol.output_closed, 0.5)  # the last lines, into the tail
        self._forget()

    def kill_now(self) -> None:
        """SIGKILL the whole group at once, without waiting (blocking: reads /proc briefly)."""
        if self._stopped:
            return
        self._stopping = True
        _signal_all(self.pgid, self._left(), signal.SIGKILL)
        self._forget()

    def _forget(self) -> None:
        self._stopped = True
        _live.remove(self.pid)
        self._transport.close()
        recorded, pid = self._recorded, self.pid
        if recorded is None or recorded.done():
            _in_background(_records.remove, pid)
        else:  # removed after it was added, never before
            recorded.add_done_callback(lambda _: _in_background(_records.remove, pid))


_background: set[asyncio.Future[None]] = set()


def _in_background(fn: Callable[[int], None], pid: int) -> None:
    """Run `fn(pid)` in a thread without waiting for it (on the loop: file I/O); with no loop
    running in this thread (interpreter exit, another thread), run it here and now."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        fn(pid)
        return
    task = loop.create_task(asyncio.to_thread(fn, pid))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _wait_done(future: asyncio.Future[None], timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), timeout_s)


@dataclass
class _Live:
    owner: int
    stop_timeout_s: float


class _LiveServers:
    """Server groups this process started and has not stopped; stopped at interpreter exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[int, _Live] = {}

    def add(self, pid: int, stop_timeout_s: float) -> None:
        with self._lock:
            self._servers[pid] = _Live(os.getpid(), stop_timeout_s)

    def remove(self, pid: int) -> None:
        with self._lock:
            self._servers.pop(pid, None)

    def pids(self) -> list[int]:
        with self._lock:
            me = os.getpid()  # a forked child must not stop its parent's servers
            return [pid for pid, live in self._servers.items() if live.owner == me]

    def stop_all(self, timeout_s: float = EXIT_STOP_S) -> None:
        """SIGTERM every live group, wait (at most `timeout_s`), SIGKILL the rest. Blocking."""
        pids = self.pids()
        if not pids:
            return
        with self._lock:
            wait_s = min(timeout_s, max(self._servers[p].stop_timeout_s for p in pids))
        trees = {pid: server_processes(pid) for pid in pids}
        for pid, members in trees.items():
            _signal_all(pid, members, signal.SIGTERM)
        everyone = [p for members in trees.values() for p in members]
        end = time.monotonic() + wait_s
        while time.monotonic() < end and any(_running(p) for p in everyone):
            time.sleep(0.02)
        for pid, members in trees.items():
            _signal_all(pid, members, signal.SIGKILL)
            self.remove(pid)
            _records.remove(pid)


_live = _LiveServers()
atexit.register(_live.stop_all)


def stop_all_servers(timeout_s: float = EXIT_STOP_S) -> None:
    """Stop every server this process started and has not stopped (blocking).

    Runs by itself at interpreter exit (also after Ctrl+C); an application that exits some other
    way (``os._exit``, a signal handler) may call it first. SIGKILL needs no call: on Linux the
    servers die with the manager.
    """
    _live.stop_all(timeout_s)


def live_server_pids() -> list[int]:
    """Leaders of the servers this process started and has not stopped yet."""
    return _live.pids()


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class _Records:
    """``servers.json`` in the state folder: live servers and the manager process of each.

    It lets a later manager clean up after one that was SIGKILLed: pdeathsig takes the server
    itself, but workers that did not ask for it would live on, holding GPU memory.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _path(self) -> Path:
        return state_dir() / "servers.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads, and other managers (flock where there is one)."""
        with self._lock:
            try:
                import fcntl
            except ImportError:  # Windows
                yield
                return
            try:
                self._path().parent.mkdir(parents=True, exist_ok=True)
                lock_file = open(self._path().with_suffix(".lock"), "a")  # noqa: SIM115
            except OSError:
                yield
                return
            with lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                yield

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self._path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def _write(self, records: list[dict[str, Any]]) -> None:
        path = self._path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(records, indent=1), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            logger.debug("cannot write %s: %s", path, exc)

    def add(self, pid: int) -> None:
        me = os.getpid()
        record = {
            "pid": pid,
            "started": _create_time(pid),
            "manager_pid": me,
            "manager_started": _create_time(me),
        }
        with self._locked():
            self._write([*(r for r in self._read() if r.get("pid") != pid), record])

    def remove(self, pid: int) -> None:
        with self._locked():
            records = self._read()
            kept = [r for r in records if r.get("pid") != pid]
            if len(kept) != len(records):
                self._write(kept)

    def reap_orphans(self) -> list[int]:
        """Kill what is left of servers whose manager died; returns the pids killed."""
        with self._locked():
            records = self._read()
            orphans = [r for r in records if not _owner_alive(r)]
            if not orphans:
                return []
            killed = [pid for r in orphans for pid in _kill_leftovers(r)]
            self._write([r for r in records if r not in orphans])
        if killed:
            logger.warning(
                "killed %d processes left by servers of a manager that died", len(killed)
            )
        return killed


def _owner_alive(record: dict[str, Any]) -> bool:
    pid, started = record.get("manager_pid"), record.get("manager_started")
    if not isinstance(pid, int):
        return False
    now = _create_time(pid)
    return now is not None and alive(pid) and (started is None or abs(now - started) < 1.0)


def _kill_leftovers(record: dict[str, Any]) -> list[int]:
    """SIGKILL what is left of the record's process group.

    While the leader lives it must be the recorded server (same start time). Once it is gone,
    Linux does not reuse its pid while the group has members, so they are the server's.
    """
    pgid, started = record.get("pid"), record.get("started")
    if not isinstance(pgid, int) or not isinstance(started, int | float):
        return []
    leader_started = _create_time(pgid) if alive(pgid) else None
    if leader_started is not None and abs(leader_started - started) >= 1.0:
        return []  # the pid belongs to another process now
    killed = []
    for proc in psutil.process_iter(["create_time", "status"]):
        try:
            if (
                os.getpgid(proc.pid) != pgid
                or proc.info["create_time"] < started - 1.0
                or proc.info["status"] == psutil.STATUS_ZOMBIE
            ):
                continue
            proc.kill()
            killed.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return killed


_records = _Records()
_reaped = False


async def reap_orphans_once() -> None:
    """Once per process: clean up after servers of a manager that died (see `_Records`)."""
    global _reaped
    if not _reaped:
        _reaped = True
        await asyncio.to_thread(_records.reap_orphans)


__all__ = [
    "LOOPBACK",
    "ServerProcess",
    "alive",
    "describe_exit",
    "free_port",
    "http_status",
    "live_server_pids",
    "reap_orphans_once",
    "server_processes",
    "stop_all_servers",
]
