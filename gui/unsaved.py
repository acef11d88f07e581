"""Whether the selections differ from the config file's, and what to do with them on quit.

"Differ" is by value: choosing b and then a again leaves nothing to save. The file's
selections are taken when a config is loaded and when the selections are saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget


class UnsavedChoice(Enum):
    """What the person wants done with selections that are not in the file."""

    SAVE = "save"
    DISCARD = "discard"
    CANCEL = "cancel"


class SelectionsOnFile:
    """The selections the config file holds, to compare the manager's with."""

    def __init__(self, on_file: Mapping[str, str]) -> None:
        self._on_file = dict(on_file)

    def now_on_file(self, selections: Mapping[str, str]) -> None:
        """The file was read or written: it holds `selections`."""
        self._on_file = dict(selections)

    def changes(self, selections: Mapping[str, str]) -> list[str]:
        """``"task: on file → now"`` for each task whose selection is not the file's."""
        return [
            f"{task}: {self._on_file.get(task, '—')} → {option}"
            for task, option in selections.items()
            if self._on_file.get(task) != option
        ]


def ask_unsaved(parent: QWidget, path: Path, changes: list[str]) -> UnsavedChoice:
    """Ask whether to save the changed selections into `path` before quitting."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Unsaved selections")
    box.setText(f"Save the changed selections into {path.name} before quitting?")
    box.setInformativeText("\n".join(changes))
    buttons = QMessageBox.StandardButton
    box.setStandardButtons(buttons.Save | buttons.Discard | buttons.Cancel)
    box.setDefaultButton(buttons.Save)
    box.setEscapeButton(buttons.Cancel)
    answer = box.exec()
    box.deleteLater()
    if answer == buttons.Save:
        return UnsavedChoice.SAVE
    if answer == buttons.Discard:
        return UnsavedChoice.DISCARD
    return UnsavedChoice.CANCEL


__all__ = ["SelectionsOnFile", "UnsavedChoice", "ask_unsaved"]
