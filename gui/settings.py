"""What the panel remembers between runs (QSettings): the last config and the window layout.

``VRAMDECK_STATE_DIR`` puts the settings in an INI file there instead of the user's settings,
so tests and smoke runs never touch a person's real layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "vramdeck"
APPLICATION = "vramdeck"


def open_settings() -> QSettings:
    """The settings store: ``$VRAMDECK_STATE_DIR/vramdeck.ini`` when set, else the user's."""
    state_dir = os.environ.get("VRAMDECK_STATE_DIR")
    if state_dir:
        return QSettings(str(Path(state_dir) / "vramdeck.ini"), QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


def last_config(settings: QSettings) -> Path | None:
    """The config opened last time, if it still exists."""
    value = settings.value("config/last")
    if isinstance(value, str) and value and Path(value).is_file():
        return Path(value)
    return None


def remember_config(settings: QSettings, path: Path) -> None:
    settings.setValue("config/last", str(Path(path).resolve()))


def layout_value(settings: QSettings, key: str) -> QByteArray | None:
    """A saved geometry or splitter state, or None."""
    value = settings.value(f"layout/{key}")
    return value if isinstance(value, QByteArray) and not value.isEmpty() else None


def save_layout_value(settings: QSettings, key: str, value: QByteArray) -> None:
    settings.setValue(f"layout/{key}", value)


def chart_window_s(settings: QSettings, default: int = 60) -> int:
    """The chart's time window in seconds, as last chosen."""
    try:
        return int(settings.value("chart/window_s", default))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def flag(settings: QSettings | None, key: str, default: bool) -> bool:
    """A remembered on/off choice (QSettings' INI files give "true"/"false" back as text)."""
    if settings is None:
        return default
    value = settings.value(key, default)
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1")


#: Whether the panel serves its models over the OpenAI API (on unless turned off).
SERVING_ENABLED = "serving/enabled"
#: Whether an action that would evict a model asks first (off unless turned on).
ASK_BEFORE_EVICTING = "actions/ask_before_evicting"


__all__ = [
    "ASK_BEFORE_EVICTING",
    "SERVING_ENABLED",
    "chart_window_s",
    "flag",
    "last_config",
    "layout_value",
    "open_settings",
    "remember_config",
    "save_layout_value",
]
