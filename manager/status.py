"""Typed snapshots of the tasks and of the budget plan, in bytes; the seed's dicts built from them.

Front ends read the typed values (`TaskStatus`, `BudgetCheck`); code written against the
original reads the dicts (`loaded_models_info`, `BudgetCheck.as_seed_dict`), in GiB as it did.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .core import Core
from .memory import HOST, DeviceReading, is_cuda
from .planning import BudgetCheck, Planner, Requirement, check_selection
from .residency import Residency
from .tiers import expected_restore
from .units import GIB


class TaskState(StrEnum):
    """Where a task stands (the values are the words the panel shows)."""

    LOADING = "loading"
    IN_USE = "in use"
    LOADED = "loaded"
    EXTERNAL = "external"  # an external API's client is ready; it holds no local memory
    FAILED = "failed"
    PARKED = "parked"  # evicted to host RAM: back in a fraction of a load
    SLEEPING = "sleeping"  # a managed server asleep: its process kept, its memory given back
    UNLOADED = "unloaded"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class TaskStatus:
    """One task now. Sizes in bytes; `measured_bytes` is live while loaded, else the ledger's."""

    task: str
    state: TaskState
    option: str
    model_id: str
    holds_memory: bool
    device: str
    estimated_bytes: int
    measured_bytes: int | None
    pinned: bool
    leases: int = 0
    loaded_at: float | None = None
    last_used_at: float | None = None
    load_duration_s: float | None = None
    progress: float | None = None
    stage: str = ""
    failure: str | None = None
    first_inference_s: float | None = None  # the last warm-up's latency here (the ledger's)
    residency: Residency = Residency.OFF
    restore_s: float | None = None  # expected seconds to bring it back from `residency`
    devices: tuple[str, ...] = ()  # every device it holds memory on (a server on several GPUs)

    @property
    def is_loaded(self) -> bool:
        return self.state in (TaskState.LOADED, TaskState.IN_USE, TaskState.EXTERNAL)


def task_status(core: Core, name: str, primary_device: str) -> TaskStatus:
    """The snapshot of task `name` (`primary_device` stands for ``auto`` when not loaded)."""
    task = core.task(name)
    option = task.get_selected_config()
    entry = core.table.entry(name)
    loaded = entry.loaded
    holds = core.holds_device_memory(option) if loaded is None else loaded.holds_memory
    failure = entry.failures.get(task.selected)
    if entry.flight is not None:
        state = TaskState.LOADING
    elif loaded is not None:
        state = TaskState.EXTERNAL if not holds else TaskState.LOADED
        state = TaskState.IN_USE if loaded.leases and holds else state
    elif entry.suspended is not None:
        parked = entry.suspended.residency is Residency.HOST
        state = TaskState.PARKED if parked else TaskState.SLEEPING
    elif failure is not None:
        state = TaskState.FAILED
    else:
        state = TaskState.UNAVAILABLE if option.unavailable_reason else TaskState.UNLOADED
    progress = entry.progress
    measured: int | None
    spans: tuple[str, ...] = ()
    if loaded is None and entry.suspended is not None:
        device, measured = entry.suspended.device, entry.suspended.bytes
        idle_since = time.time() - (time.monotonic() - entry.suspended.last_used)
    elif loaded is None:
        device = option.device if option.device != "auto" else primary_device
        measured = core.ledger.measured_bytes(option, device) if holds else None
        idle_since = None
    else:
        device, measured, spans = loaded.device, loaded.bytes, loaded.devices
        idle_since = time.time() - (time.monotonic() - loaded.last_used)
    return TaskStatus(
        task=name,
        state=state,
        option=option.name if loaded is None else loaded.option,
        model_id=option.model_id if loaded is None else loaded.model_id,
        holds_memory=holds,
        device=device,
        estimated_bytes=option.vram_bytes,
        measured_bytes=measured,
        pinned=entry.pinned,
        leases=loaded.leases if loaded else 0,
        loaded_at=loaded.loaded_at if loaded else None,
        last_used_at=idle_since,
        load_duration_s=loaded.load_duration_s if loaded else None,
        progress=progress[0] if progress else None,
        stage=progress[1] if progress else "",
        failure=failure or option.unavailable_reason,
        first_inference_s=core.ledger.first_inference_s(
            option if loaded is None else loaded.config, device
        ),
        residency=entry.residency,
        restore_s=expected_restore(core, entry),
        devices=spans or ((device,) if holds else ()),
    )


def loaded_models_info(core: Core) -> dict[str, dict[str, Any]]:
    """The seed's ``get_loaded_models()``: task → model_id, memory_usage_gb, device, …"""
    now = time.monotonic()
    return {
        m.task: {
            "model_id": m.model_id,
            "option": m.option,
            "device": m.device,
            "memory_usage_gb": m.bytes / GIB,
            "measured_bytes": m.bytes,
            "bytes_by_device": {d: m.bytes_on(d) for d in m.devices},
            "estimated_gb": m.estimated_bytes / GIB,
            "load_time": m.loaded_at,
            "load_duration_s": m.load_duration_s,
            "idle_s": now - m.last_used,
            "pinned": m.owner.pinned,
            "in_use": m.leases,
        }
        for m in core.table.residents()
    }


def check_budget(
    core: Core,
    readings: Mapping[str, DeviceReading],
    seed_figures: tuple[int, int] | None = None,
) -> BudgetCheck:
    """Plan the selected models onto `readings`' devices with the planner, counting other
    processes' memory as placement does. `seed_figures`, when given, is (total, available) of
    the primary device from the seed's ``get_total_vram()`` / ``get_available_vram()``, which a
    subclass may override: they replace that device's reading."""
    readings = dict(readings)
    primary = tuple(d for d in readings if is_cuda(d)) or (HOST,)
    if seed_figures is not None and len(primary) == 1:
        total, available = seed_figures
        r = readings[primary[0]]
        readings[primary[0]] = replace(r, total=total, used=max(0, total - available))
    held = {d: core.table.bytes_on(d) for d in readings}
    planner = Planner.from_tasks(core.tasks, readings, core.inference, core.ledger.measured_bytes,
                                 held=held, holds_memory=core.holds_device_memory)  # fmt: skip
    return check_selection(planner, core.tasks, core.inference)


__all__ = [
    "BudgetCheck",
    "Requirement",
    "TaskState",
    "TaskStatus",
    "check_budget",
    "loaded_models_info",
    "task_status",
]
