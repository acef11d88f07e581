"""Errors the manager raises; each message names the task and what went wrong, with numbers.

The first words of each message are the seed's (``Invalid task type: …``, ``Invalid model name:
… for task …``, ``Insufficient memory for …``), so code written against the original that
matches them keeps working; vramdeck's explanation follows.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import ConfigError


class ModelLoadError(ValueError):
    """A model could not be loaded (a ValueError, as the seed document specifies)."""

    def __init__(self, task: str, reason: str) -> None:
        self.task, self.reason = task, reason
        super().__init__(f"{task}: {reason}")


class LoadCancelledError(ModelLoadError):
    """A load in flight was abandoned by ``cancel_load``; nothing of it is held any more.

    Every caller waiting for that load gets this error (a ModelLoadError, so a ValueError as the
    seed's load errors); only a caller that is itself cancelled gets asyncio.CancelledError.
    """


class InsufficientMemoryError(RuntimeError):
    """Even evicting every candidate could not make room; nothing was evicted."""

    def __init__(self, task: str, detail: str) -> None:
        self.task, self.detail = task, detail
        super().__init__(f"Insufficient memory for {task}: {detail}")


class ModelInUseError(RuntimeError):
    """A model that callers hold through ``manager.use()`` cannot be unloaded now."""


def unknown_task(task: str, valid: Iterable[str]) -> ValueError:
    """The seed's error for a task that is not configured."""
    return ValueError(f"Invalid task type: {task} (tasks: {', '.join(valid) or 'none'})")


def unknown_option(option: str, task: str, valid: Iterable[str]) -> ValueError:
    """The seed's error for an option that the task does not have."""
    return ValueError(f"Invalid model name: {option} for task {task} (options: {', '.join(valid)})")


__all__ = [
    "ConfigError",
    "InsufficientMemoryError",
    "LoadCancelledError",
    "ModelInUseError",
    "ModelLoadError",
    "unknown_option",
    "unknown_task",
]
