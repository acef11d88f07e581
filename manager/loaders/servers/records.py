"""``servers.json`` in the state folder: the live servers of every manager, and whose they are.

It lets a later manager clean up after one that was SIGKILLed: the parent-death signal takes the
server itself, but workers that did not ask for it would live on, holding GPU memory. Blocking
(file I/O, /proc): call it from a thread on the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from vramdeck.manager.logs import state_dir

from .group import alive, create_time

logger = logging.getLogger(__name__)


class ServerRecords:
    """The records file, shared by every manager of this user (locked with flock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _path(self) -> Path:
        return state_dir() / "servers.json"  # read each time: the state folder may move

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
        """Record the server `pid` as this process's."""
        me = os.getpid()
        record = {
            "pid": pid,
            "started": create_time(pid),
            "manager_pid": me,
            "manager_started": create_time(me),
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
    now = create_time(pid)
    return now is not None and alive(pid) and (started is None or abs(now - started) < 1.0)


def _kill_leftovers(record: dict[str, Any]) -> list[int]:
    """SIGKILL what is left of the record's process group.

    While the leader lives it must be the recorded server (same start time). Once it is gone,
    Linux does not reuse its pid while the group has members, so they are the server's.
    """
    pgid, started = record.get("pid"), record.get("started")
    if not isinstance(pgid, int) or not isinstance(started, int | float):
        return []
    leader_started = create_time(pgid) if alive(pgid) else None
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
