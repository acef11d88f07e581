"""vramdeck's desktop panel (PySide6): the task table, memory chart, budget view and event log.

Only `gui.bridge` imports `manager`. ``QT_API`` is set here so that qasync, imported by the
modules of this package, picks PySide6 even when PyQt is installed too; and PySide6's import
hook is made cheap before torch is imported (see `import_hook`).
"""

import os

os.environ.setdefault("QT_API", "pyside6")

import PySide6.QtCore  # noqa: F401  (installs the import hook made cheap below)

from .import_hook import lighten_pyside_import_hook

lighten_pyside_import_hook()

__all__: list[str] = []
