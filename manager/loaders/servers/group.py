"""A server's process group: who is in it, who left it, and signals that reach them all.

Everything here blocks (psutil reads ``/proc``): call it through ``asyncio.to_thread`` on the
event loop.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

import psutil


def alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped) does not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def running(proc: psutil.Process) -> bool:
    """Whether `proc` (the very process, not a later one with its pid) runs."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def create_time(pid: int) -> float | None:
    """When `pid` started (seconds since the epoch), or None when it does not exist."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def group_members(pgid: int) -> list[psutil.Process]:
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
    left the group (finding strays costs ten times more)."""
    found = {p.pid: p for p in group_members(pid)}
    if strays:
        with contextlib.suppress(psutil.Error):
            found.update((c.pid, c) for c in psutil.Process(pid).children(recursive=True))
    return [p for p in found.values() if running(p)]


def signal_all(pgid: int, procs: Iterable[psutil.Process], sig: int) -> None:
    """Send `sig` to the group and to each of `procs` (some may have left the group).

    psutil checks that a process is still the one it was (pid and start time) before it
    signals, so a recycled pid is never hit.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
