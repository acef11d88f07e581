"""PySide6's import hook made cheap: after every import in the process, PySide6 asks whether
the new module "uses PySide" by reading its whole source (``inspect.getsource``, kept in
``linecache``). Importing torch and transformers after PySide6 read 2,216 files, 1.38 M lines,
and took 0.6-0.8 s longer.

The answer only matters to modules that select a ``__feature__`` (snake_case names,
true properties), and the hook registers those when they import ``__feature__``; vramdeck
selects none. So the question is answered from the module's name instead.
"""

from __future__ import annotations

import sys
from types import ModuleType

#: Top-level packages whose modules use PySide6 (the answer PySide6 would find in them).
QT_PACKAGES = frozenset({"PySide6", "shiboken6", "pyqtgraph", "qasync", "pytestqt", "vramdeck"})


def _uses_pyside(module: ModuleType) -> bool:
    return getattr(module, "__name__", "").partition(".")[0] in QT_PACKAGES


def lighten_pyside_import_hook() -> bool:
    """Answer PySide6's per-import question by name; False where this PySide6 has no such
    hook (another version: nothing to do)."""
    feature = sys.modules.get("PySide6.support.feature")
    if feature is None or not callable(getattr(feature, "_mod_uses_pyside", None)):
        return False
    feature.__dict__["_mod_uses_pyside"] = _uses_pyside
    return True


__all__ = ["QT_PACKAGES", "lighten_pyside_import_hook"]
