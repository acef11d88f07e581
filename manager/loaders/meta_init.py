"""Skip weight initialisation of tensors on the meta device.

transformers 5 builds a model on the meta device (no storage) and then reads the checkpoint into
it, but the modules' constructors still call ``torch.nn.init`` on every weight (GPT-2's
``Conv1D`` calls ``normal_`` itself; ``nn.Linear`` and ``nn.Embedding`` in ``reset_parameters``).
On the meta device those calls go through torch's Python reference kernels under the meta
device mode: for the demo's small GPT-2 they were about 40 % of the loader thread's time holding
the GIL (py-spy, bench/RESULTS.md), time the panel's thread queued behind, and they produce
nothing: a meta tensor has no values to initialise.

`install()` wraps each public ``torch.nn.init`` function, once per process, so that a meta tensor
is returned untouched and every other tensor is initialised by the original function exactly as
before (same values, same random stream). Because it changes only what could not have an effect,
it is safe for every thread and for code outside vramdeck; transformers' own ``no_init_weights``
patches the same functions more broadly (to no-ops for all tensors, while the block runs).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_installed = False
_lock = threading.Lock()


def _skipping_meta(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def init(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(tensor, "is_meta", False):
            return tensor
        return original(tensor, *args, **kwargs)

    init.vramdeck_skips_meta = True  # type: ignore[attr-defined]
    return init


def install() -> None:
    """Make ``torch.nn.init``'s in-place initialisers skip meta tensors (idempotent)."""
    global _installed
    if _installed:
        return
    from torch.nn import init as torch_init

    with _lock:
        if _installed:
            return
        for name in dir(torch_init):
            original = getattr(torch_init, name)
            # The in-place initialisers are the public names ending in "_" (normal_, zeros_, ...).
            if name.startswith("_") or not name.endswith("_") or not callable(original):
                continue
            if not getattr(original, "vramdeck_skips_meta", False):
                setattr(torch_init, name, _skipping_meta(original))
        _installed = True


__all__ = ["install"]
