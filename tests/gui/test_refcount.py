"""PySide6 6.12 drops a reference to True on every Signal.emit() under CPython 3.11 and aborts
the process after ~2,000 emits (shared/ENVIRONMENT.md). A live chart emits on every repaint."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(bool)


def test_emitting_does_not_leak_references_to_true() -> None:
    emitter = _Emitter()
    received: list[bool] = []
    emitter.fired.connect(received.append)
    before = sys.getrefcount(True)
    for _ in range(500):
        emitter.fired.emit(True)
    received.clear()
    assert sys.getrefcount(True) >= before, "this PySide6 build loses references on emit"
