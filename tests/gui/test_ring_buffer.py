from __future__ import annotations

import numpy as np
import pytest

from vramdeck.gui.ring_buffer import RingBuffer, decimate_max


def test_latest_rows_are_one_contiguous_view_after_wrapping() -> None:
    ring = RingBuffer(capacity=4, width=2)
    for t in range(1, 7):
        ring.append([t, 10 * t])
    rows = ring.latest()
    assert rows[:, 0].tolist() == [3, 4, 5, 6]
    assert rows[:, 1].tolist() == [30, 40, 50, 60]
    assert rows.base is not None  # a view: drawing never copies the ring
    assert not rows.flags.writeable
    assert ring.latest(2)[:, 0].tolist() == [5, 6]
    assert len(ring) == 4


def test_since_selects_by_time() -> None:
    ring = RingBuffer(capacity=10, width=2)
    for t in range(10):
        ring.append([t, t])
    assert ring.since(6.5)[:, 0].tolist() == [7, 8, 9]
    assert ring.since(100).shape[0] == 0


def test_widen_keeps_rows_and_pads_new_columns_with_zero() -> None:
    ring = RingBuffer(capacity=3, width=2)
    ring.append([1, 5])
    ring.widen(4)
    ring.append([2, 6, 7, 8])
    assert ring.latest().tolist() == [[1, 5, 0, 0], [2, 6, 7, 8]]
    ring.append([3, 9])  # a short row is padded
    last = ring.last()
    assert last is not None and last.tolist() == [3, 9, 0, 0]


def test_rejects_empty_shapes() -> None:
    with pytest.raises(ValueError):
        RingBuffer(0, 1)


def test_decimate_keeps_peaks_and_the_last_time_of_each_bin() -> None:
    rows = np.column_stack([np.arange(100.0), np.zeros(100)])
    rows[37, 1] = 5.0  # a short spike
    out = decimate_max(rows, 10)
    assert out.shape == (10, 2)
    assert out[:, 1].max() == 5.0
    assert out[-1, 0] == 99.0
    assert decimate_max(rows, 1000) is rows
