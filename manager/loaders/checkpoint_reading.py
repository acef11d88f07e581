"""How far a transformers load has read its safetensors checkpoint: bytes of tensors read of the
files' total, counted where transformers opens the files.

transformers opens each safetensors file with ``safe_open`` (named in ``modeling_utils``) and
reads every tensor through a slice of it, in the loading thread or in its own pool. While a load
in this thread runs inside `reading_reported`, the files it opens are wrapped so that each tensor
read reports the bytes so far; loads in other threads, and code outside the block, see the
original objects. Where transformers does not open files that way (another version, pickle
checkpoints), nothing is reported and the loader's stages stand alone.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: Called with (bytes read, bytes in all the files opened so far), from any thread.
ReadReport = Callable[[int, int], None]

_local = threading.local()
_install_lock = threading.Lock()


class CheckpointReading:
    """The bytes one load has read of the tensors in the safetensors files it opened."""

    def __init__(self, report: ReadReport) -> None:
        self._report = report
        self._lock = threading.Lock()
        self.total = 0
        self.done = 0
        self._files: set[str] = set()

    def opened(self, path: str) -> None:
        with self._lock:
            if path in self._files:
                return
            self._files.add(path)
        size = _tensor_bytes(path)
        with self._lock:
            self.total += size

    def read(self, nbytes: int) -> None:
        with self._lock:  # reported under the lock, so the figures never go back
            self.done += nbytes
            self._report(self.done, self.total)


def _tensor_bytes(path: str) -> int:
    """The bytes of a safetensors file's tensors: its size less the header (u64 length + JSON)."""
    with open(path, "rb") as f:
        (header,) = struct.unpack("<Q", f.read(8))
    return max(0, os.path.getsize(path) - 8 - int(header))


class _CountedSlice:
    """A tensor slice of a checkpoint file; reading it (``slice[...]``) counts its bytes."""

    def __init__(self, inner: Any, reading: CheckpointReading) -> None:
        self._inner, self._reading = inner, reading

    def __getitem__(self, key: Any) -> Any:
        tensor = self._inner[key]
        self._reading.read(tensor.numel() * tensor.element_size())
        return tensor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CountedFile:
    """An open safetensors file whose tensor reads are counted."""

    def __init__(self, inner: Any, reading: CheckpointReading) -> None:
        self._inner, self._reading = inner, reading

    def get_slice(self, name: str) -> _CountedSlice:
        return _CountedSlice(self._inner.get_slice(name), self._reading)

    def get_tensor(self, name: str) -> Any:
        tensor = self._inner.get_tensor(name)
        self._reading.read(tensor.numel() * tensor.element_size())
        return tensor

    def __enter__(self) -> _CountedFile:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._inner.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _counting(original: Callable[..., Any]) -> Callable[..., Any]:
    def safe_open(filename: Any, *args: Any, **kwargs: Any) -> Any:
        handle = original(filename, *args, **kwargs)
        reading: CheckpointReading | None = getattr(_local, "reading", None)
        if reading is None:
            return handle
        reading.opened(os.fspath(filename))
        return _CountedFile(handle, reading)

    safe_open.vramdeck_counting = True  # type: ignore[attr-defined]
    return safe_open


def _install() -> bool:
    """Wrap transformers' ``safe_open`` once; False where transformers opens files otherwise."""
    from transformers import modeling_utils

    with _install_lock:
        current = getattr(modeling_utils, "safe_open", None)
        if current is None:
            return False
        if not getattr(current, "vramdeck_counting", False):
            setattr(modeling_utils, "safe_open", _counting(current))  # noqa: B010 (typed as a class)
        return True


@contextlib.contextmanager
def reading_reported(report: ReadReport) -> Iterator[CheckpointReading | None]:
    """Report the checkpoint bytes that loads in this thread read inside the block; yields None
    where they cannot be counted."""
    if not _install():
        yield None
        return
    reading = CheckpointReading(report)
    _local.reading = reading
    try:
        yield reading
    finally:
        _local.reading = None


__all__ = ["CheckpointReading", "ReadReport", "reading_reported"]
