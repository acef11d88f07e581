"""The main window's commands on the config file: open, reload, save (asking before
overwriting a file changed on disk), and the question on quit when the selections differ
from the file's. A mixin of MainWindow, kept apart so that each file stays readable."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from .bridge import CHANGED_ON_DISK, SAVED, ManagerBridge
from .status_bar import StatusBar
from .unsaved import SelectionsOnFile, UnsavedChoice, ask_unsaved


class ConfigFileCommands(QMainWindow):
    """Open, reload and save the config; ask about unsaved selections on quit."""

    bridge: ManagerBridge
    status: StatusBar
    on_file: SelectionsOnFile
    _close_requested: bool
    _close_after_save: bool

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        raise NotImplementedError

    @property
    def selections_differ(self) -> bool:
        """Whether the selections differ from the config file's (by value)."""
        return bool(self.on_file.changes(self.bridge.selections()))

    def _may_save(self) -> bool:
        return self.selections_differ and not self._close_requested

    def reload_config(self, path: str | None = None) -> asyncio.Task[Any]:
        """Read the config again (or `path`); a bad file keeps the current config."""
        return self._spawn(self.bridge.reload_config(path))

    def save_config(self, overwrite: bool = False) -> asyncio.Task[Any]:
        """Save the selections; a file changed on disk meanwhile is overwritten only if the
        person says so (asked outside the task: a modal dialog must not run inside its step)."""

        async def save() -> None:
            outcome = await self.bridge.save_config(overwrite=overwrite)
            if outcome == CHANGED_ON_DISK:
                QTimer.singleShot(0, self, self._ask_overwrite)
            elif outcome == SAVED and self._close_after_save:
                QTimer.singleShot(0, self, self.close)  # saved as asked on quit: go on
            else:
                self._close_after_save = False

        return self._spawn(save())

    def _ask_overwrite(self) -> None:
        if self.confirm_overwrite(self.bridge.config_path):
            self.save_config(overwrite=True)
        else:
            self._close_after_save = False
            self.status.showMessage("Not saved: the file changed on disk", 6000)

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask whether to save over a config that changed on disk (tests replace this)."""
        answer = QMessageBox.question(
            self,
            "The config changed on disk",
            f"{path} was changed by another program since vramdeck read it.\n\n"
            "Save your selections into it anyway? Only the `selected:` lines change; "
            "the other edits stay.",
        )
        return answer == QMessageBox.StandardButton.Yes

    def open_config(self) -> None:
        # A sync slot on purpose: the modal dialog runs a nested event loop, which must not
        # happen inside an asyncio task's step.
        path = self.choose_config_path()
        if path:
            self.reload_config(path)

    def choose_config_path(self) -> str | None:
        """Ask for a config file (tests replace this)."""
        start = str(self.bridge.config_path.parent)
        path, _ = QFileDialog.getOpenFileName(
            self, "Open config", start, "Configs (*.yaml *.yml);;All files (*)"
        )
        return path or None

    def ask_unsaved(self) -> UnsavedChoice:
        """Ask what to do with selections not in the file, on quit (tests replace this)."""
        changes = self.on_file.changes(self.bridge.selections())
        return ask_unsaved(self, self.bridge.config_path, changes)

    def _unsaved_may_close(self) -> bool:
        """On quit with selections not in the file: Save (close once saved), Discard, or
        Cancel (stay open)."""
        if not self._may_save():
            return True
        choice = self.ask_unsaved()
        if choice == UnsavedChoice.SAVE:
            self._close_after_save = True
            self.save_config()
        return choice == UnsavedChoice.DISCARD


__all__ = ["ConfigFileCommands"]
