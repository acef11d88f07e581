"""Where a worker thread's garbage collection runs: here, by default, or where the host app says.

A failed or cancelled load leaves the tensors it read in reference cycles (its traceback's
frames), which only a collection frees. A collection finalizes whatever garbage the process
has, though, and a GUI's objects (Qt's) must be destroyed on their own thread: destroyed in a
model-loading worker, they crash the app later. So the loaders ask for one through
`collect_garbage`, and an app with such objects sends it to its GUI thread (`collect_with`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

_collect: Callable[[], object] = gc.collect


def collect_garbage() -> None:
    """Collect now (the default) or ask the host app's thread to (see `collect_with`)."""
    _collect()


def collect_with(collect: Callable[[], object] | None) -> None:
    """Run the loaders' collections through `collect` (None: here, in the calling thread)."""
    global _collect
    _collect = collect if collect is not None else gc.collect


__all__ = ["collect_garbage", "collect_with"]
