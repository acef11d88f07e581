"""The Try-it dock: choose a task, type a prompt (or sentences, one a line, for an embedding
model), send it through the endpoint's own path, and watch the output stream in with the time to
the first token and the tokens per second.

The dock imports no manager code: `drive` connects it to a `run(task, text)` callable that
yields text pieces and ends with an object carrying ``time_to_first_token_s``, ``tokens`` and
``tokens_per_second`` (``vramdeck.serving.try_it`` is one, reached through the bridge).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

logger = logging.getLogger(__name__)

Run = Callable[[str, str], AsyncIterator[Any]]


class TryItDock(QDockWidget):
    """A prompt box, a Send/Stop button and the streamed output of one task."""

    sendRequested = Signal(str, str)  # task, text
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Try it", parent)
        self.setObjectName("tryItDock")
        self._notes: dict[str, str] = {}
        self.task = QComboBox()
        self.task.currentTextChanged.connect(self._show_note)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("A prompt, or sentences (one a line) for an embedding model")
        self.prompt.setMaximumHeight(90)
        self.send = QPushButton("Send")
        self.send.clicked.connect(self._clicked)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.stats = QLabel("")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.setWidget(self._layout())
        self._running = False

    def _layout(self) -> QWidget:
        top = QHBoxLayout()
        top.addWidget(self.task, 1)
        top.addWidget(self.send)
        box = QVBoxLayout()
        for part in (self.prompt, self.output, self.stats, self.note):
            box.addWidget(part)
        box.insertLayout(0, top)
        body = QWidget()
        body.setLayout(box)
        return body

    def set_tasks(self, tasks: list[str], notes: Mapping[str, str] | None = None) -> None:
        """The tasks to offer; `notes` says something about a task (e.g. that it is noise)."""
        self._notes = dict(notes or {})
        current = self.task.currentText()
        self.task.clear()
        self.task.addItems(tasks)
        if current in tasks:
            self.task.setCurrentText(current)
        self._show_note(self.task.currentText())

    def _show_note(self, task: str) -> None:
        self.note.setText(self._notes.get(task, ""))

    def _clicked(self) -> None:
        if self._running:
            self.stopRequested.emit()
        elif self.task.currentText():
            self.sendRequested.emit(self.task.currentText(), self.prompt.toPlainText())

    # ----------------------------------------------------------------- shown by `drive`

    def begin(self) -> None:
        self._running = True
        self.send.setText("Stop")
        self.output.clear()
        self.stats.setText("waiting for the model…")

    def append(self, piece: str) -> None:
        self.output.insertPlainText(piece)

    def finish(self, done: Any) -> None:
        self._end()
        parts = []
        if done.time_to_first_token_s is not None:
            parts.append(f"first token after {done.time_to_first_token_s * 1000:.0f} ms")
        if done.tokens:
            parts.append(f"{done.tokens} tokens")
        if done.tokens_per_second is not None:
            parts.append(f"{done.tokens_per_second:.1f} tokens/s")
        self.stats.setText(", ".join(parts) or "done")

    def fail(self, message: str) -> None:
        self._end()
        self.stats.setText(message)

    def stopped(self) -> None:
        self._end()
        self.stats.setText("stopped")

    def _end(self) -> None:
        self._running = False
        self.send.setText("Send")


def drive(dock: TryItDock, run: Run) -> None:
    """Run the dock's requests through `run` on the event loop; Stop cancels the one running."""
    running: list[asyncio.Task[None]] = []

    async def one(task: str, text: str) -> None:
        dock.begin()
        try:
            async for item in run(task, text):
                if isinstance(item, str):
                    dock.append(item)
                else:
                    dock.finish(item)
        except asyncio.CancelledError:
            dock.stopped()
        except Exception as exc:  # noqa: BLE001 - shown in the dock, as the endpoint would
            logger.info("Try-it on %s failed: %s", task, exc)
            dock.fail(str(exc) or type(exc).__name__)

    def send(task: str, text: str) -> None:
        running[:] = [t for t in running if not t.done()]
        if not running:
            running.append(asyncio.ensure_future(one(task, text)))

    def stop() -> None:
        for job in running:
            job.cancel()

    dock.sendRequested.connect(send)
    dock.stopRequested.connect(stop)


__all__ = ["TryItDock", "drive"]
