"""vramdeck's desktop panel (PySide6): the task table, memory chart, budget view and event log.

Only `gui.bridge` imports `manager`. ``QT_API`` is set here so that qasync, imported by the
modules of this package, picks PySide6 even when PyQt is installed too.
"""

import os

os.environ.setdefault("QT_API", "pyside6")

__all__: list[str] = []
