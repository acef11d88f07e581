"""Errors the manager raises; each message names the task and what went wrong, with numbers."""

from __future__ import annotations

from .config import ConfigError


class ModelLoadError(ValueError):
    """A model could not be loaded (a ValueError, as the seed document specifies)."""

    def __init__(self, task: str, reason: str) -> None:
        self.task, self.reason = task, reason
        super().__init__(f"{task}: {reason}")


class InsufficientMemoryError(RuntimeError):
    """Even evicting every candidate could not make room; nothing was evicted."""


class ModelInUseError(RuntimeError):
    """A model that callers hold through ``manager.use()`` cannot be unloaded now."""


__all__ = ["ConfigError", "InsufficientMemoryError", "ModelInUseError", "ModelLoadError"]
