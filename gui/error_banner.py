"""A banner above the table for errors: a failed load, a bad config. It stays until dismissed
or replaced, and never blocks the window the way a modal dialog would."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from .formatting import fmt_clock


class ErrorBanner(QFrame):
    """Shows the latest error's title and reason; hidden when there is none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.title = QLabel(self)
        self.title.setObjectName("errorTitle")
        self.message = QLabel(self)
        self.message.setObjectName("errorMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setToolTip("Dismiss")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.title)
        layout.addWidget(self.message, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_error(self, title: str, message: str) -> None:
        self.title.setText(f"{fmt_clock(time.time())[:8]}  {title}:")
        self.message.setText(message)
        self.show()


__all__ = ["ErrorBanner"]
