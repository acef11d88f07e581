"""A fixed-size ring of float rows whose newest rows are always one contiguous numpy view.

Every row is written twice, at ``i`` and ``i + capacity``, so the last ``n`` rows are the slice
``[i + capacity - n + 1, i + capacity + 1)`` of one array: drawing reads views, never copies or
concatenations, and appending never allocates.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


class RingBuffer:
    """`capacity` rows of `width` float64 columns; column 0 is the time, increasing."""

    def __init__(self, capacity: int, width: int) -> None:
        if capacity < 1 or width < 1:
            raise ValueError("capacity and width must be ≥ 1")
        self.capacity = capacity
        self._data = np.zeros((2 * capacity, width), dtype=np.float64)
        self._next = 0  # slot of the next write, in [0, capacity)
        self._count = 0

    @property
    def width(self) -> int:
        return int(self._data.shape[1])

    def __len__(self) -> int:
        return self._count

    def widen(self, width: int) -> None:
        """Grow to `width` columns; new columns read 0 for the rows already written."""
        if width <= self.width:
            return
        grown = np.zeros((2 * self.capacity, width), dtype=np.float64)
        grown[:, : self.width] = self._data
        self._data = grown

    def append(self, row: NDArray[np.float64] | list[float]) -> None:
        """Write one row (shorter rows are padded with 0)."""
        values = np.asarray(row, dtype=np.float64)
        i = self._next
        for slot in (i, i + self.capacity):
            self._data[slot, : values.size] = values
            self._data[slot, values.size :] = 0.0
        self._next = (i + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def latest(self, n: int | None = None) -> NDArray[np.float64]:
        """The newest `n` rows (all when None), oldest first, as a read-only view."""
        n = self._count if n is None else max(0, min(n, self._count))
        end = self._next + self.capacity
        view = self._data[end - n : end]
        view.flags.writeable = False
        return view

    def since(self, t0: float) -> NDArray[np.float64]:
        """The rows whose time (column 0) is ≥ `t0`, oldest first."""
        rows = self.latest()
        start = int(np.searchsorted(rows[:, 0], t0, side="left"))
        return rows[start:]

    def last(self) -> NDArray[np.float64] | None:
        """The newest row, or None when empty."""
        return self.latest(1)[0] if self._count else None


def decimate_max(rows: NDArray[np.float64], max_rows: int) -> NDArray[np.float64]:
    """At most `max_rows` rows: consecutive bins reduced to their last time and the bin's max of
    every other column, so a short peak (an eviction's spike) survives at any zoom."""
    n = rows.shape[0]
    if n <= max_rows or max_rows < 1:
        return rows
    size = -(-n // max_rows)  # ceil
    usable = (n // size) * size
    head = rows[n - usable :].reshape(-1, size, rows.shape[1])
    out = head.max(axis=1)
    out[:, 0] = head[:, -1, 0]
    return out


def step_points(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
    """The points of a step-like series that a line through them needs: the first, the last,
    and both ends of every change. A model's memory is flat between loads, so a band of 600
    samples usually draws as a handful of points."""
    n = y.shape[0]
    if n <= 2:
        return x, y
    keep = np.empty(n, dtype=bool)
    keep[0] = keep[-1] = True
    changed = y[1:] != y[:-1]
    keep[1:-1] = changed[:-1] | changed[1:]
    return x[keep], y[keep]


__all__ = ["RingBuffer", "decimate_max", "step_points"]
