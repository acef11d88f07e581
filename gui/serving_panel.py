"""The window's side of serving: the Models menu's on/off toggle for the OpenAI-compatible
endpoint, its URL in the status bar (click to copy), a port in use shown in the banner, and the
Try-it dock (View menu) wired to the endpoint's own path.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QMainWindow, QMenu, QToolButton

from . import settings as saved
from .bridge import ManagerBridge
from .error_banner import ErrorBanner
from .status_bar import StatusBar
from .try_it_dock import TryItDock, drive

#: Where the demo's models live, as configs/demo.yaml names them (the manager's demo_models).
DEMO_ENV, MINILM_ENV = "VRAMDECK_DEMO_MODELS", "VRAMDECK_MINILM"
RANDOM_NOTE = (
    "The demo's GPT-2s have random weights made on this machine: their output is noise. "
    "They show the path (queue, load, stream, timings), not a model's skill."
)
REAL_NOTE = "The demo's MiniLM is the real all-MiniLM-L6-v2: its embeddings are meaningful."


def _under(model_id: str, env: str) -> bool:
    root = os.environ.get(env, "")
    return f"${{{env}}}" in model_id or (bool(root) and model_id.startswith(root))


def demo_note(model_id: str) -> str:
    """What the dock says about a model of the demo (random weights or real), else ""."""
    if _under(model_id, DEMO_ENV):
        return RANDOM_NOTE
    return REAL_NOTE if _under(model_id, MINILM_ENV) else ""


class ServingPanel(QObject):
    """Adds serving to `window`: the toggle, the URL field, the banner on failure, Try-it."""

    def __init__(
        self,
        window: QMainWindow,
        bridge: ManagerBridge,
        status: StatusBar,
        banner: ErrorBanner,
        settings: QSettings | None,
    ) -> None:
        super().__init__(window)
        self._bridge, self._status, self._banner = bridge, status, banner
        self._settings = settings
        self._jobs: set[asyncio.Task[Any]] = set()
        self.toggle = QAction("Serve the models (OpenAI API)", window)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(saved.flag(settings, saved.SERVING_ENABLED, True))
        self.toggle.setStatusTip(
            "Listen for OpenAI API requests on loopback: a task name is the model name"
        )
        self.toggle.toggled.connect(self._toggled)
        self.url_button = QToolButton(status)
        self.url_button.setObjectName("servingUrl")
        self.url_button.setAutoRaise(True)
        self.url_button.clicked.connect(self.copy_url)
        status.addPermanentWidget(self.url_button)
        self.dock = TryItDock(window)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.show_dock = self.dock.toggleViewAction()
        self.show_dock.setText("Try it…")
        self.show_dock.setShortcut("Ctrl+T")
        drive(self.dock, bridge.serving.try_it)
        bridge.serving.urlChanged.connect(self._show_url)
        bridge.serving.failed.connect(self._failed)
        bridge.tasksReset.connect(self._offer_tasks)
        self._show_url("")
        self._offer_tasks()

    def add_to_menus(self, models: QMenu, view: QMenu) -> None:
        models.addSeparator()
        models.addAction(self.toggle)
        view.addSeparator()
        view.addAction(self.show_dock)

    @property
    def wanted(self) -> bool:
        return self.toggle.isChecked()

    async def start_if_wanted(self) -> None:
        """Start the endpoint at the panel's start when the toggle is on."""
        if self.wanted:
            await self._bridge.serving.start()

    def copy_url(self) -> None:
        url = self._bridge.serving.url
        if url:
            QGuiApplication.clipboard().setText(url)
            self._status.showMessage(f"Copied {url}", 4000)

    def _toggled(self, on: bool) -> None:
        if self._settings is not None:
            self._settings.setValue(saved.SERVING_ENABLED, on)
        serving = self._bridge.serving
        self._spawn(serving.start() if on else serving.stop())

    def _show_url(self, url: str) -> None:
        if url:
            self.url_button.setText(f"serving {url}")
            self.url_button.setToolTip(
                f"The OpenAI-compatible endpoint: base_url={url}, model=<task name>. "
                "Click to copy the URL"
            )
        else:
            self.url_button.setText("not serving")
            self.url_button.setToolTip("Models ▸ Serve the models turns the endpoint on")
        self.url_button.setEnabled(bool(url))

    def _failed(self, reason: str) -> None:
        self._banner.show_error("The OpenAI endpoint is not running", reason)
        self.toggle.blockSignals(True)
        self.toggle.setChecked(False)
        self.toggle.blockSignals(False)
        self._show_url("")

    def _offer_tasks(self) -> None:
        rows = self._bridge.task_rows()
        notes = {r.task: demo_note(r.option.model_id) for r in rows}
        self.dock.set_tasks([r.task for r in rows], {t: n for t, n in notes.items() if n})

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        job = asyncio.ensure_future(work)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)


__all__ = ["RANDOM_NOTE", "REAL_NOTE", "ServingPanel", "demo_note"]
