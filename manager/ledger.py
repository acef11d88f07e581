"""What each model really took, measured at every load, kept across runs.

The next budget check uses the measured figure instead of the config's estimate; beside it are
the load's seconds and the first inference's latency (from a warm-up). Entries are keyed
by model_id, dtype, quantization and device kind (``cuda`` or ``cpu``): the same weights take the
same bytes on any card of a kind. Beside the bytes, the seconds it last took to bring the model
back from each tier it was sent to (``restore_s``: ``in RAM``, ``sleeping``), which eviction
weighs. Stored as JSON in the user's cache folder.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import platformdirs

from .config import ModelConfig

logger = logging.getLogger(__name__)


def default_ledger_path() -> Path:
    """``$VRAMDECK_CACHE_DIR/ledger.json``, else the user's cache folder."""
    base = os.environ.get("VRAMDECK_CACHE_DIR") or platformdirs.user_cache_dir("vramdeck")
    return Path(base) / "ledger.json"


def ledger_key(option: ModelConfig, device: str) -> str:
    kind = device.partition(":")[0]
    return "|".join((option.model_id, option.dtype, option.quantization or "none", kind))


class Ledger:
    """Measured bytes per model; ``path=None`` keeps it in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, float]] = self._read() if path else {}
        #: Counts the changes to the figures (previews keep what they read until it moves).
        self.version = 0

    def _read(self) -> dict[str, dict[str, float]]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable ledger %s: %s", self.path, exc)
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        return {
            k: v
            for k, v in (entries or {}).items()
            if isinstance(v, dict) and isinstance(v.get("bytes"), int | float)
        }

    def measured_bytes(self, option: ModelConfig, device: str) -> int | None:
        """The last measured footprint of `option` on a device of `device`'s kind, if any."""
        with self._lock:
            entry = self._entries.get(ledger_key(option, device))
        return None if entry is None else int(entry["bytes"])

    def record(
        self, option: ModelConfig, device: str, measured: int, load_s: float | None = None
    ) -> None:
        """Remember `measured` bytes (and the load's seconds) for `option` on `device`'s kind
        (call `save` to keep it); a first-inference latency recorded before is kept."""
        with self._lock:
            entry = self._entries.setdefault(ledger_key(option, device), {})
            entry.update(bytes=int(measured), at=time.time())
            self.version += 1
            if load_s is not None:
                entry["load_s"] = float(load_s)

    def record_first_inference(self, option: ModelConfig, device: str, seconds: float) -> None:
        """Remember the latency of the first inference after a load, beside the load's figures
        (only for a model the ledger measured: one that holds memory here)."""
        with self._lock:
            entry = self._entries.get(ledger_key(option, device))
            if entry is not None:
                entry["first_inference_s"] = float(seconds)
                self.version += 1

    def first_inference_s(self, option: ModelConfig, device: str) -> float | None:
        """The last measured first-inference latency of `option` on `device`'s kind, if any."""
        return self._figure(option, device, "first_inference_s")

    def load_s(self, option: ModelConfig, device: str) -> float | None:
        """The seconds the last load of `option` on `device`'s kind took, if recorded."""
        return self._figure(option, device, "load_s")

    def _figure(self, option: ModelConfig, device: str, name: str) -> float | None:
        with self._lock:
            value = self._entries.get(ledger_key(option, device), {}).get(name)
        return float(value) if isinstance(value, int | float) else None

    def restore_seconds(self, option: ModelConfig, device: str, tier: str) -> float | None:
        """The last measured seconds to bring `option` back on `device`'s kind from `tier`."""
        with self._lock:
            entry = self._entries.get(ledger_key(option, device)) or {}
        value = entry.get(f"restore_s:{tier}")
        return None if value is None else float(value)

    def record_restore(self, option: ModelConfig, device: str, tier: str, seconds: float) -> None:
        """Remember that bringing `option` back from `tier` took `seconds` (call `save`)."""
        with self._lock:
            entry = self._entries.get(ledger_key(option, device))
            if entry is not None:  # restores follow a load, which made the entry
                entry[f"restore_s:{tier}"] = float(seconds)
                self.version += 1

    def record_asleep(self, option: ModelConfig, device: str, nbytes: int) -> None:
        """Remember that `option`'s server kept `nbytes` on `device`'s kind while asleep (its
        contexts), for previews of its next sleep (call `save`)."""
        with self._lock:
            entry = self._entries.get(ledger_key(option, device))
            if entry is not None:  # sleeps follow a load, which made the entry
                entry["asleep_bytes"] = int(nbytes)
                self.version += 1

    def asleep_bytes(self, option: ModelConfig, device: str) -> int | None:
        """What `option`'s server kept on `device`'s kind the last time it slept, if known."""
        figure = self._figure(option, device, "asleep_bytes")
        return None if figure is None else int(figure)

    def save(self) -> None:
        """Write the ledger to its file (atomically); a no-op for an in-memory ledger."""
        if self.path is None:
            return
        with self._lock:
            entries = dict(self._entries)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".ledger-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "entries": entries}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            # A read-only cache costs only the next run's head start, never a load.
            logger.warning("could not save the ledger to %s: %s", self.path, exc)


__all__ = ["Ledger", "default_ledger_path", "ledger_key"]
