"""A child that dies with the thread that started it (Linux ``PR_SET_PDEATHSIG``), so a server
never outlives its manager, even one that is SIGKILLed."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1


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
        usage = subprocess.run(
            [path, "--help"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage.stdout else None


def tied_to_parent(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """`argv` so that the child dies with the starting thread (Linux), and the pre-exec step.

    ``setpriv --pdeathsig KILL`` costs an exec; a pre-exec function costs a real fork of the
    manager's process (tens of ms once torch is loaded, with the event loop waiting), so it is
    only the fall-back. Blocking the first time (it asks setpriv what it can do).
    """
    setpriv = _setpriv()
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv], None
    return list(argv), _die_with_parent(os.getpid())
