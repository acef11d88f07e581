"""The bridge's copies: manager values (events, snapshots, plans) turned into `gui.records`.

Part of the bridge (with bridge.py, the only gui modules that import `manager`): widgets see the
records only. Pure functions, no Qt.
"""

from __future__ import annotations

from typing import Any

from vramdeck.manager import (
    BudgetCheck,
    BudgetExceeded,
    ConfigReloaded,
    Event,
    LoadProgress,
    MemoryNotReturned,
    MemorySampled,
    ModelConfig,
    ModelCrashed,
    ModelEvent,
    ModelLoaded,
    ModelLoading,
    ModelParked,
    ModelRemoved,
    ModelRestored,
    ModelSlept,
    ModelWoken,
    PinChanged,
    SelectionChanged,
    ServerOutput,
    SleepFailed,
    SwitchFailed,
    TaskConfig,
    TaskEvent,
    TaskStatus,
)
from vramdeck.manager import LoadFailed as LoadFailedEvent
from vramdeck.manager import ModelEvicted as ModelEvictedEvent
from vramdeck.manager.events import Thrashing
from vramdeck.manager.loaders.servers.handle import ServerHandle
from vramdeck.manager.preview import Preview
from vramdeck.manager.residency import HostTierStatus
from vramdeck.manager.thrash import Fix
from vramdeck.serving.events import RequestFinished, RequestStarted

from .formatting import fmt_bytes, fmt_duration, plain_reason, short_model_id
from .records import (
    BudgetReport,
    DevicePlan,
    FixAction,
    HostTierInfo,
    LogEntry,
    MemorySample,
    OptionInfo,
    PlanPreview,
    RequestCounts,
    TaskRow,
    ThrashFix,
)

#: The pseudo-device of models that hold no local memory, as events name it.
_NO_DEVICE = "none"

_SEVERITY: dict[type[Event], str] = {
    ModelEvictedEvent: "eviction",
    LoadFailedEvent: "error",
    ModelCrashed: "error",
    SwitchFailed: "error",
    MemoryNotReturned: "warning",
    BudgetExceeded: "warning",
    SleepFailed: "warning",
}


def option_info(option: ModelConfig) -> OptionInfo:
    return OptionInfo(
        name=option.name,
        model_id=option.model_id,
        framework=option.framework,
        vram_gb=option.vram_gb,
        speed=option.speed,
        device=option.device,
        description=option.description,
        quantization=option.quantization,
        unavailable_reason=option.unavailable_reason,
    )


def task_row(
    task: TaskConfig,
    status: TaskStatus,
    *,
    busy: bool,
    requests: RequestCounts | None = None,
    server_url: str = "",
) -> TaskRow:
    """The table row of `task` from its snapshot (and the endpoint's counts for it)."""
    return TaskRow(
        task=status.task,
        description=task.description,
        options=tuple(option_info(o) for o in task.options.values()),
        selected=task.selected,
        state=status.state,
        progress=status.progress,
        stage=status.stage,
        failure=status.failure,
        # A server on several GPUs shows them all ("cuda:0+cuda:1").
        device="+".join(status.devices or (status.device,)) if status.holds_memory else "API",
        estimated_bytes=status.estimated_bytes,
        measured_bytes=status.measured_bytes,
        measured_is_live=status.is_loaded and status.holds_memory,
        last_used_at=status.last_used_at,
        load_duration_s=status.load_duration_s,
        pinned=status.pinned,
        busy=busy,
        requests=requests or RequestCounts(),
        server_url=server_url,
        residency=status.residency.value if status.holds_memory else "API",
        restore_s=status.restore_s,
        first_inference_s=status.first_inference_s,
    )


def thrash_of(event: Event) -> tuple[tuple[str, ...], str] | None:
    """A Thrashing event's tasks and what it cost in words, else None."""
    if not isinstance(event, Thrashing):
        return None
    cost = f"{event.reloads} reloads in {event.window_s:.0f} s, {event.seconds_lost:.1f} s lost"
    return tuple(event.tasks), cost


def server_url(model: object) -> str:
    """A loaded managed server's own base URL (``http://127.0.0.1:PORT/v1``), else ""."""
    return model.base_url if isinstance(model, ServerHandle) else ""


def preview_record(preview: Preview) -> PlanPreview:
    """The manager's Preview as the panel shows it: one line per model it would move."""
    moves = tuple(
        f"{e.task} ({e.option}, {fmt_bytes(e.bytes)}) {_goes(e.goes_to)}{_back(e.restore_s)}"
        for e in preview.evictions
    )
    return PlanPreview(bool(preview.fits), str(preview.summary), moves, tuple(preview.what_fits))


def _goes(residency: Any) -> str:
    words = str(getattr(residency, "value", residency))
    return {"in RAM": "parked in RAM", "sleeping": "put to sleep"}.get(words, "evicted")


def _back(restore_s: float | None) -> str:
    return f", back in {fmt_duration(restore_s)}" if restore_s is not None else ""


def fix_record(fix: Fix) -> ThrashFix:
    # By the enum's name: FixKind's values are words ("raise budget").
    return ThrashFix(FixAction[fix.kind.name], fix.task, fix.option, fix.budget_bytes,
                     fix.summary)  # fmt: skip


def host_tier_info(status: HostTierStatus, parked: tuple[str, ...] = ()) -> HostTierInfo:
    return HostTierInfo(
        bool(status.enabled),
        int(status.used_bytes),
        int(status.budget_bytes),
        str(status.reason),
        parked,
    )


def memory_sample(event: MemorySampled, host_tier: HostTierInfo | None = None) -> MemorySample:
    return MemorySample(
        device=event.device,
        at=event.at,
        used=event.used_bytes,
        total=event.total_bytes,
        limit=event.budget_bytes,
        threshold=event.threshold_bytes,
        memory_budget=event.memory_budget_bytes,
        manager=event.manager_bytes,
        per_task=dict(event.per_task),
        host_tier=host_tier,
    )


def budget_report(check: BudgetCheck, at: float) -> BudgetReport:
    plans = tuple(
        DevicePlan(
            device=d,
            name=p.room.name,
            total=p.room.total,
            budget=p.room.budget,
            tasks=dict(p.tasks),
            others=p.room.taken_by_others,
        )
        for d, p in check.plans.items()
    )
    return BudgetReport(check.valid, plans, check.external, at, dict(check.skipped))


def log_entry(event: Event) -> LogEntry:
    """A manager event as one log line; events this version does not know still get one."""
    model_id = event.model_id if isinstance(event, ModelEvent) else ""
    device = (
        event.device if isinstance(event, ModelEvent | MemoryNotReturned | BudgetExceeded) else ""
    )
    option = ""
    if isinstance(event, ModelEvent):
        option = event.option
    elif isinstance(event, SelectionChanged | SwitchFailed):
        option = event.new
    return LogEntry(
        at=event.at,
        kind=event.kind,
        task=event.task if isinstance(event, TaskEvent | RequestStarted | RequestFinished) else "",
        model=option or short_model_id(model_id),
        model_id=model_id,
        device="" if device == _NO_DEVICE else device,
        bytes=event.size_bytes if event.size_bytes is not None else getattr(event, "bytes", None),
        duration_s=getattr(event, "duration_s", None),
        reason=event_reason(event),
        severity=next((s for t, s in _SEVERITY.items() if isinstance(event, t)), "info"),
    )


def event_reason(event: Event) -> str:
    """What the log's Reason column says about `event`."""
    match event:
        case ModelLoading():
            return f"needs {fmt_bytes(event.required_bytes)}" if event.required_bytes else ""
        case LoadProgress():
            share = f" ({event.fraction:.0%})" if event.fraction is not None else ""
            return event.stage + share
        case ModelLoaded():
            estimated = fmt_bytes(event.estimated_bytes)
            return f"estimated {estimated}" if event.estimated_bytes else ""
        case ModelRemoved():
            return event.description
        case ModelParked():
            return f"parked in RAM; the tier holds {fmt_bytes(event.host_used_bytes)}"
        case ModelRestored():
            return "restored from RAM"
        case ModelSlept():
            return f"server asleep (level {event.level}), waited {event.waited_s:.1f} s"
        case ModelWoken():
            return f"server woken (level {event.level})"
        case SleepFailed():
            return f"stopped instead: {event.reason}"
        case LoadFailedEvent():
            return plain_reason(event.reason, event.task)  # the row names the task
        case BudgetExceeded():
            return event.reason
        case SwitchFailed():
            return f"{event.new} failed, back to {event.old}: {event.reason}"
        case MemoryNotReturned():
            returned, expected = fmt_bytes(event.returned_bytes), fmt_bytes(event.expected_bytes)
            return f"only {returned} of {expected} came back"
        case ModelCrashed():
            last = f": {event.last_output[-1]}" if event.last_output else ""
            return f"exit code {event.exit_code}{last}"
        case ServerOutput():
            return event.line
        case SelectionChanged():
            return f"{event.old} → {event.new}"
        case PinChanged():
            return "pinned" if event.pinned else "unpinned"
        case ConfigReloaded():
            return event.path
        case RequestStarted():
            return f"{event.route.value} after {fmt_duration(event.queue_wait_s)} waiting"
        case RequestFinished():
            return f"HTTP {event.status} in {fmt_duration(event.duration_s)}"
    return ""


__all__ = [
    "budget_report",
    "event_reason",
    "fix_record",
    "host_tier_info",
    "log_entry",
    "memory_sample",
    "option_info",
    "preview_record",
    "server_url",
    "task_row",
    "thrash_of",
]
