"""Bringing a parked or sleeping model back: restore from host RAM or wake its server through the
same room, reservation and measurement as a load (the load pipeline calls it first); a failed
comeback frees what was left and the pipeline loads cold."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span

from . import telemetry as tm
from .config import ModelConfig
from .core import Core
from .events import ModelLoaded, ModelLoading, ModelRestored, RemovalReason
from .eviction import Eviction, describe_failure
from .loaders.base import LoadContext
from .loaders.servers.events import woken
from .loaders.servers.sleep import WakeReport
from .lru import LoadedModel, TaskEntry

logger = logging.getLogger(__name__)


class Comeback:
    """Brings suspended models back, for one manager's load pipeline."""

    def __init__(
        self,
        core: Core,
        eviction: Eviction,
        context: Callable[[str, str, Any, int], LoadContext],
        landed: Callable[[TaskEntry, object], None],
        load_hist: Histogram,
    ) -> None:
        self._core = core
        self._eviction = eviction
        self._context = context
        self._landed = landed
        self._load_hist = load_hist

    async def bring_back(self, entry: TaskEntry, option: ModelConfig, span: Span) -> Any | None:
        """Restore or wake the task's parked or sleeping model for `option`; returns it, or None
        to load cold: the suspended model was of another option, or its restore failed (then it
        was dropped). InsufficientMemoryError, the model still suspended, when no room is made."""
        core, devices = self._core, self._core.devices
        kept = entry.suspended
        assert kept is not None
        if kept.config.load_signature() != option.load_signature():
            await self._eviction.drop(entry, RemovalReason.SWITCH, option.name)
            return None
        started, where, device = time.monotonic(), kept.residency, kept.device
        required = max(0, kept.bytes - kept.asleep_bytes)
        entry.progress = (0.0, f"bringing it back ({where.value})")
        core.emit(ModelLoading(task=entry.task, option=option.name, model_id=option.model_id,
                               device=device, required_bytes=required))  # fmt: skip
        async with devices.lock(device):
            # Out of the tier first: making room parks others, which must not drop this one.
            entry.suspended, host_bytes = None, core.host_tier.remove(entry.task)
            try:
                reading = await self._eviction.make_room(device, required, for_task=entry.task)
            except BaseException:
                entry.suspended = kept
                if host_bytes:
                    core.host_tier.add(entry.task, host_bytes)
                raise
            reservation = devices.reserve(device, required)
        ctx = self._context(entry.task, device, devices.probe, reading.total)
        try:
            report = await kept.loader.resume(kept.model, ctx)
        except Exception as exc:  # noqa: BLE001 - any failed restore falls back to a cold load
            logger.warning("bringing %s back from %s failed (%s); loading it cold", entry.task,
                           where.value, describe_failure(exc))  # fmt: skip
            await self._release(kept)
            return None
        except BaseException:
            await self._release(kept)
            raise
        finally:
            devices.release(reservation)
        own = kept.loader.footprint(kept.model, device) if kept.loader.live_footprint else None
        measured = own if own is not None else kept.bytes
        duration = time.monotonic() - started
        self._landed(entry, asyncio.current_task())
        core.table.add(LoadedModel(entry, kept.model, kept.config, kept.loader, device, measured,
                                   kept.load_duration_s))  # fmt: skip
        core.ledger.record_restore(kept.config, device, where.value, duration)
        core.devices.submit(device, core.ledger.save)
        names: dict[str, Any] = {"task": entry.task, "option": kept.option,
                                 "model_id": kept.model_id, "device": device}  # fmt: skip
        if isinstance(report, WakeReport):
            core.emit(woken(report, **names))
        else:
            core.emit(ModelRestored(**names, bytes=report.taken_bytes, duration_s=duration))
        core.emit(ModelLoaded(**names, measured_bytes=measured, estimated_bytes=option.vram_bytes,
                              duration_s=duration))  # fmt: skip
        tm.mark_loaded(span, measured)
        self._load_hist.record(duration, {"outcome": where.name.lower(),
                                          "framework": option.framework})  # fmt: skip
        return kept.model

    @staticmethod
    async def _release(kept: LoadedModel) -> None:
        """Free what a failed restore left of a suspended model."""
        try:
            await kept.loader.unload(kept.model, kept.device)
        except Exception:  # any loader: logged, the model is let go anyway
            logger.exception("freeing %s after its failed restore failed", kept.task)
        kept.model = None
