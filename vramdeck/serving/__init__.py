"""vramdeck's OpenAI-compatible HTTP endpoint over the manager (aiohttp, on the manager's loop).

This package imports the manager; the manager never imports it. No Qt here. Names are imported
on first use, so the CLI's parser can import ``vramdeck.serving.command`` without aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import RequestFinished, RequestStarted, Route
    from .server import Endpoint
    from .settings import API_KEY_ENV, DEFAULT_HOST, DEFAULT_PORT, ServeError, ServeSettings

_WHERE = {
    "RequestFinished": "events", "RequestStarted": "events", "Route": "events",
    "Endpoint": "server",
    "API_KEY_ENV": "settings", "DEFAULT_HOST": "settings", "DEFAULT_PORT": "settings",
    "ServeError": "settings", "ServeSettings": "settings",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "API_KEY_ENV",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Endpoint",
    "RequestFinished",
    "RequestStarted",
    "Route",
    "ServeError",
    "ServeSettings",
]
