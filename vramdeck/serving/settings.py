"""The endpoint's settings: defaults, the config's ``inference.serving`` map, the command line.

``inference.serving`` is kept by the config as a mapping (`InferenceConfig.serving`) and
checked here; every bad value is a ConfigError naming the file and the key, e.g.
``models.yaml: inference.serving.port: expected a whole number in 0..65535, got 'x'``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from vramdeck.manager.config import ConfigError, InferenceConfig

DEFAULT_HOST = "127.0.0.1"
#: The documented default port (Ollama has 11434, LM Studio 1234, vLLM 8000).
DEFAULT_PORT = 8765
#: The environment variable holding the bearer token that guards a non-loopback address.
API_KEY_ENV = "VRAMDECK_API_KEY"
CONFIG_KEY = "serving"


class ServeError(RuntimeError):
    """The endpoint cannot start as asked (port in use, no token off loopback); says why."""


@dataclass(frozen=True)
class ServeSettings:
    """How the endpoint listens and what it accepts.

    Attributes
    ----------
    host, port : str, int
        Where it listens; port 0 picks a free one.
    max_body_bytes : int
        Larger request bodies get 413 before they are read.
    max_tokens : int
        The cap on a request's ``max_tokens`` (more is a 400).
    default_max_tokens : int
        ``max_tokens`` of a chat request that gives none (completions default to 16, as OpenAI).
    max_inputs : int
        The most inputs one embeddings request may batch.
    queue_size : int
        Requests per task that may wait for their model; one more gets 429.
    queue_timeout_s : float
        How long a request waits for room before 503.
    retry_after_s : int
        The ``Retry-After`` of a 503 or 429.
    drain_timeout_s : float
        On shutdown, how long requests in flight may take to finish.
    cors_origins : tuple[str, ...]
        Origins allowed to call from a browser; empty: CORS off.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = 4 * 2**20
    max_tokens: int = 4096
    default_max_tokens: int = 256
    max_inputs: int = 256
    queue_size: int = 16
    queue_timeout_s: float = 60.0
    retry_after_s: int = 5
    drain_timeout_s: float = 10.0
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_config(
        cls, inference: InferenceConfig, *, file: str = "", **overrides: Any
    ) -> ServeSettings:
        """Defaults, then ``inference.serving`` of the config, then `overrides` not None."""
        raw = inference.serving
        key = f"inference.{CONFIG_KEY}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"expected a mapping, got {raw!r}", file=file, key=key)
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in known:
                expected = ", ".join(known)
                raise ConfigError(f"unknown key; expected one of {expected}", file=file,
                                  key=f"{key}.{name}")  # fmt: skip
            values[name] = _checked(name, value, file=file, key=f"{key}.{name}")
        settings = replace(cls(), **values)
        given = {k: v for k, v in overrides.items() if v is not None}
        for name, value in given.items():
            _checked(name, value, file="command line", key=f"--{name}")
        return replace(settings, **given)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def api_key(self) -> str | None:
        """The bearer token from the environment (read now; never logged), or None."""
        return os.environ.get(API_KEY_ENV) or None

    def check_exposure(self) -> None:
        """A non-loopback host needs a token: ServeError when it has none."""
        if not self.loopback and self.api_key() is None:
            raise ServeError(
                f"listening on {self.host} (not loopback) needs a token: set {API_KEY_ENV} "
                "in the environment; clients then send it as 'Authorization: Bearer <token>'"
            )


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback name or address (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_RANGES: dict[str, tuple[type, float, float]] = {
    "port": (int, 0, 65535),
    "max_body_bytes": (int, 1, float("inf")),
    "max_tokens": (int, 1, float("inf")),
    "default_max_tokens": (int, 1, float("inf")),
    "max_inputs": (int, 1, float("inf")),
    "queue_size": (int, 1, float("inf")),
    "queue_timeout_s": (float, 0, float("inf")),
    "retry_after_s": (int, 0, float("inf")),
    "drain_timeout_s": (float, 0, float("inf")),
}


def _checked(name: str, value: Any, *, file: str, key: str) -> Any:
    if name == "host":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"expected a host name or address, got {value!r}", file=file, key=key)
        return value
    if name == "cors_origins":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"expected a list of origins, got {value!r}", file=file, key=key)
        return tuple(value)
    kind, low, high = _RANGES[name]
    wrong_type = isinstance(value, bool) or not isinstance(
        value, int if kind is int else int | float
    )
    if wrong_type or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        bound = f"in {low:g}..{high:g}" if high != float("inf") else f"≥ {low:g}"
        raise ConfigError(f"expected {what} {bound}, got {value!r}", file=file, key=key)
    return kind(value)


__all__ = [
    "API_KEY_ENV",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ServeError",
    "ServeSettings",
    "is_loopback",
]
