"""The manager's garbage collections, run on the GUI thread (see manager/collection.py).

A failed or cancelled load asks for a collection from its worker thread, to free the tensors its
traceback's cycles hold. Run there, it would also finalize the panel's garbage Qt objects off
their thread, which crashes the app later; so the request is queued to the GUI thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot

from vramdeck.manager.collection import collect_with


class _GuiThreadCollections(QObject):
    """Lives on the GUI thread as long as the application; a request from any thread is
    queued to it."""

    requested = Signal()

    def __init__(self, app: QObject) -> None:
        super().__init__(app)
        self.requested.connect(self._collect)

    @Slot()
    def _collect(self) -> None:
        gc.collect()


_routing: _GuiThreadCollections | None = None


def collect_on_gui_thread() -> None:
    """Route the manager's collections to the GUI thread, once per application (call it on
    the GUI thread, with the application made)."""
    global _routing
    app = QCoreApplication.instance()
    if _routing is not None or app is None:
        return
    _routing = _GuiThreadCollections(app)
    collect_with(_routing.requested.emit)


__all__ = ["collect_on_gui_thread"]
