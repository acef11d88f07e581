"""The servers this process started and has not stopped, so none outlives it.

The first start registers an exit hook that stops them all (normal exit, Ctrl+C) and cleans up
after servers of a manager that died (see `records`); nothing happens at import. Each server is
also recorded in the state folder while it lives.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .group import running, server_processes, signal_all
from .records import ServerRecords

#: How long the exit hook waits for servers to stop before it kills them.
EXIT_STOP_S = 10.0

_pending: set[asyncio.Task[None]] = set()  # background work, held until done


def in_background(fn: Callable[[int], None], pid: int) -> asyncio.Task[None] | None:
    """Run `fn(pid)` in a thread without waiting for it (on the loop: file I/O), and return its
    task; with no loop running in this thread (interpreter exit, another thread), run it here
    and now, and return None."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        fn(pid)
        return None
    task = loop.create_task(asyncio.to_thread(fn, pid))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return task


@dataclass
class _Live:
    owner: int  # the process that started it: a forked child must not stop its parent's
    stop_timeout_s: float
    recorded: asyncio.Task[None] | None  # the write of its record, while it runs


class LiveServers:
    """Server groups this process started and has not stopped."""

    def __init__(self, records: ServerRecords | None = None) -> None:
        self.records = records if records is not None else ServerRecords()
        self._lock = threading.Lock()
        self._servers: dict[int, _Live] = {}
        self._hooked = False
        self._reap_lock = threading.Lock()
        self._reaped = False

    async def prepare(self) -> None:
        """Before a start: the first time, kill what servers of a manager that died left."""
        await asyncio.to_thread(self._reap_once)

    def _reap_once(self) -> None:
        with self._reap_lock:  # a concurrent start waits until the leftovers are gone
            if not self._reaped:
                self._reaped = True
                self.records.reap_orphans()

    def add(self, pid: int, stop_timeout_s: float) -> None:
        """Count the server `pid` as live (and record it, in the background)."""
        with self._lock:
            if not self._hooked:
                self._hooked = True
                atexit.register(self.stop_all)
            recorded = in_background(self.records.add, pid)
            self._servers[pid] = _Live(os.getpid(), stop_timeout_s, recorded)

    def remove(self, pid: int) -> None:
        """The server `pid` is stopped: forget it, and its record once that is written."""
        with self._lock:
            live = self._servers.pop(pid, None)
        if live is None:
            return
        recorded, records = live.recorded, self.records
        if recorded is None or recorded.done():
            in_background(records.remove, pid)
        else:  # removed after it was added, never before
            recorded.add_done_callback(lambda _: in_background(records.remove, pid))

    def pids(self) -> list[int]:
        with self._lock:
            me = os.getpid()
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
            signal_all(pid, members, signal.SIGTERM)
        everyone = [p for members in trees.values() for p in members]
        end = time.monotonic() + wait_s
        while time.monotonic() < end and any(running(p) for p in everyone):
            time.sleep(0.02)
        for pid, members in trees.items():
            signal_all(pid, members, signal.SIGKILL)
            with self._lock:
                self._servers.pop(pid, None)
            self.records.remove(pid)


#: This process's servers.
LIVE_SERVERS = LiveServers()


def stop_all_servers(timeout_s: float = EXIT_STOP_S) -> None:
    """Stop every server this process started and has not stopped (blocking).

    Runs by itself at interpreter exit (also after Ctrl+C); an application that exits some other
    way (``os._exit``, a signal handler) may call it first. SIGKILL needs no call: on Linux the
    servers die with the manager.
    """
    LIVE_SERVERS.stop_all(timeout_s)


def live_server_pids() -> list[int]:
    """Leaders of the servers this process started and has not stopped yet."""
    return LIVE_SERVERS.pids()
