"""Helpers for the GUI tests: drive the qasync loop, wait for a condition, write configs."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import qasync
from PySide6.QtCore import QEvent, QPoint
from PySide6.QtGui import QHelpEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QWidget

from tests.waiting import until  # noqa: F401  (the gui tests import it from here)

T = TypeVar("T")


def run(loop: asyncio.AbstractEventLoop, work: Awaitable[T], timeout: float = 30.0) -> T:
    """Run `work` as a task and process Qt events until it is done, failing after `timeout` s.

    The test loop is "already running" (as the app's loop is while the window is open), so
    asyncio callbacks run whenever Qt processes events: here, in qtbot's waits, anywhere.
    """
    task = loop.create_task(asyncio.wait_for(work, timeout))
    deadline = time.monotonic() + timeout + 5
    while not task.done():
        if time.monotonic() > deadline:
            task.cancel()
            raise AssertionError(f"{work!r} did not finish in {timeout:g} s")
        QTest.qWait(5)
    return task.result()


def write_config(tmp_path: Path, text: str, name: str = "models.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def hover(widget: QWidget) -> str:
    """The tooltip a hover on `widget` would show: the event as its parent's filter sees it
    (delivering it would pop a real tooltip up, which the offscreen platform warns about)."""
    event = QHelpEvent(QEvent.Type.ToolTip, QPoint(2, 2), widget.mapToGlobal(QPoint(2, 2)))
    watcher = widget.parent()
    assert watcher is not None, f"{widget!r} has no parent to filter its events"
    watcher.eventFilter(widget, event)
    return str(widget.toolTip())


@dataclass
class Answers:
    """Stands in for a question to the person (`window.prompts.ask`): records each
    (title, question) asked and answers `reply`."""

    reply: bool = False
    asked: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, title: str, question: str) -> bool:
        self.asked.append((title, question))
        return self.reply


@dataclass
class Panel:
    """A running panel: the real manager, bridge, window and session, on `loop`."""

    loop: qasync.QEventLoop
    manager: Any
    bridge: Any
    window: Any
    session: Any

    def run(self, work: Awaitable[T], timeout: float = 30.0) -> T:
        return run(self.loop, work, timeout)
