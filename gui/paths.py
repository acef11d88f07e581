"""Where the shipped configs and resources are: beside the package in a checkout or an editable
install, inside a PyInstaller bundle, or under ``<prefix>/share/vramdeck`` in a wheel install."""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _candidates(folder: str) -> list[Path]:
    bundle = getattr(sys, "_MEIPASS", None)
    found = [_PACKAGE_DIR.parent / folder, _PACKAGE_DIR / folder]
    if bundle:
        found.insert(0, Path(bundle) / folder)
    found.append(Path(sys.prefix) / "share" / "vramdeck" / folder)
    return found


def find_dir(folder: str) -> Path | None:
    """The first existing `folder` (``configs`` or ``resources``) among the known places."""
    return next((p for p in _candidates(folder) if p.is_dir()), None)


def shipped_config(name: str = "demo.yaml") -> Path | None:
    """A config that ships with vramdeck, e.g. ``demo.yaml``, or None when it cannot be found."""
    folder = find_dir("configs")
    path = folder / name if folder is not None else None
    return path if path is not None and path.is_file() else None


def resource(name: str) -> Path | None:
    """A file in ``resources/`` (style sheet, icons), or None."""
    folder = find_dir("resources")
    path = folder / name if folder is not None else None
    return path if path is not None and path.is_file() else None


__all__ = ["find_dir", "resource", "shipped_config"]
