"""Waiting in tests for a condition that no event announces (a widget's text, another process's
output), bounded so a test that would hang fails instead, naming what it waited for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], object], what: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Wait, with the loop running, until `predicate()` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
        await asyncio.sleep(0.02)
