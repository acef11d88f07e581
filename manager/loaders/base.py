"""The loader protocol: how the manager loads, measures and unloads one framework's models.

A loader's methods block (weights to the device, process waits) and run in the manager's worker
for the model's device, so memory deltas on that device are attributable. They return values and
never emit events; progress goes through the thread-safe callbacks in `LoadContext`.

`load` and `unload` may instead be coroutine functions (server loaders, whose waits are long):
the manager awaits them on the event loop, where they must not block.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.memory import MemoryProbe


def _ignore_progress(fraction: float | None, stage: str) -> None:
    pass


def _ignore_output(line: str) -> None:
    pass


@dataclass(frozen=True)
class LoadContext:
    """What a loader gets besides the option: where to load, how to measure, and how to report.

    `probe` is the manager's own memory probe (a loader that measures reads what the manager
    reads). `progress` and `output` may be called from any thread; the manager turns them into
    events on the loop's thread.
    """

    task: str
    device: str
    probe: MemoryProbe
    device_total_bytes: int = 0
    progress: Callable[[float | None, str], None] = _ignore_progress
    output: Callable[[str], None] = _ignore_output
    extra: dict[str, Any] = field(default_factory=dict)


class LoaderUnavailable(RuntimeError):
    """The framework cannot load here (a package is missing); the message says what to do."""


@runtime_checkable
class Loader(Protocol):
    """One framework's way to load models.

    Attributes
    ----------
    frameworks : tuple[str, ...]
        The `framework:` values this loader serves.
    holds_device_memory : bool
        False for loaders whose models take no local memory (external APIs).
    """

    frameworks: ClassVar[tuple[str, ...]]
    holds_device_memory: ClassVar[bool]

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        """Why `option` cannot load here (e.g. "pip install vllm"), or None when it can."""
        ...

    def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        """Load `option` onto `ctx.device` and return the model (or a client handle).

        On failure, free whatever was allocated before raising.
        """
        ...

    def footprint(self, model: Any, device: str) -> int | None:
        """Bytes `model` holds on `device` by its own account, or None when it cannot tell."""
        ...

    def unload(self, model: Any, device: str) -> Awaitable[None] | None:
        """Release `model`'s memory; the caller drops its last reference afterwards."""
        ...

    def check(self, model: Any) -> tuple[int | None, tuple[str, ...]] | None:
        """None while healthy; (exit code, last output lines) once the model's process died."""
        ...


__all__ = ["LoadContext", "Loader", "LoaderUnavailable"]
