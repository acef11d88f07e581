"""vramdeck's OpenAI-compatible HTTP endpoint over the manager (aiohttp, on the manager's loop).

This package imports the manager; the manager never imports it. No Qt here.
"""

from .events import RequestFinished, RequestStarted, Route
from .server import Endpoint
from .settings import API_KEY_ENV, DEFAULT_HOST, DEFAULT_PORT, ServeError, ServeSettings

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
