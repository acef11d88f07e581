"""Memory figures in words: MiB below 1 GiB (a small model is never "0.00 GiB"), else GiB."""

from __future__ import annotations

MIB = 1024**2
GIB = 1024**3


def format_bytes(n: int | float) -> str:
    """``512.0 MiB``, ``3.50 GiB``; negative figures keep their sign."""
    if abs(n) < GIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / GIB:.2f} GiB"


__all__ = ["GIB", "MIB", "format_bytes"]
