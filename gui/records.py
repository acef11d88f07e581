"""Plain values that the bridge hands to the widgets: rows, log entries, samples and plans.

They hold copies, never manager objects, so no widget depends on the manager's types and a
value stays valid after the manager changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from .formatting import GIB, fmt_bytes


@dataclass(frozen=True, slots=True)
class OptionInfo:
    """One model option of a task, as the option combo box shows it."""

    name: str
    model_id: str
    framework: str
    vram_gb: float
    speed: str
    device: str
    description: str = ""
    quantization: str | None = None
    unavailable_reason: str | None = None

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    @property
    def external(self) -> bool:
        return self.framework == "external_api"

    @property
    def label(self) -> str:
        """``name · 512 MiB · fast`` (external APIs show ``API`` for their memory)."""
        memory = "API" if self.external else fmt_bytes(self.vram_gb * GIB)
        return f"{self.name} · {memory} · {self.speed}"


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """A task's requests through the endpoint (and Try-it): holding the model, waiting for it,
    answered, and how long the last one took."""

    in_flight: int = 0
    queued: int = 0
    served: int = 0
    last_latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class TaskRow:
    """Everything the task table shows about one task, read from the manager at one moment."""

    task: str
    description: str
    options: tuple[OptionInfo, ...]
    selected: str
    state: str  # unloaded | loading | loaded | in use | failed | external | unavailable
    progress: float | None = None
    stage: str = ""
    failure: str | None = None
    device: str = ""
    estimated_bytes: int = 0
    measured_bytes: int | None = None
    measured_is_live: bool = False  # True: held now; False: the ledger's last measurement
    last_used_at: float | None = None  # wall clock (time.time())
    load_duration_s: float | None = None
    pinned: bool = False
    busy: bool = False  # a command for this task is running (load, unload, switch)
    requests: RequestCounts = RequestCounts()
    server_url: str = ""  # a managed server's own base URL while it runs
    residency: str = "off"  # on device | in RAM | sleeping | off | API (holds no memory here)
    restore_s: float | None = None  # expected seconds to bring it back from where it is
    first_inference_s: float | None = None  # the warm-up's first inference, measured

    @property
    def option(self) -> OptionInfo:
        """The selected option."""
        return next(o for o in self.options if o.name == self.selected)

    @property
    def loaded(self) -> bool:
        return self.state in ("loaded", "in use", "external")

    @property
    def loading(self) -> bool:
        return self.state == "loading"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the event log: a manager event, or an error the panel met."""

    at: float
    kind: str
    task: str = ""
    model: str = ""  # the option's name where known, else the model id
    device: str = ""
    bytes: int | None = None
    duration_s: float | None = None
    reason: str = ""
    severity: str = "info"  # info | eviction | warning | error
    model_id: str = ""

    def as_dict(self) -> dict[str, object]:
        """The entry as plain JSON-able values (for export)."""
        return {
            "at": self.at,
            "kind": self.kind,
            "task": self.task,
            "model": self.model,
            "model_id": self.model_id,
            "device": self.device,
            "bytes": self.bytes,
            "duration_s": self.duration_s,
            "reason": self.reason,
            "severity": self.severity,
        }


@dataclass(frozen=True, slots=True)
class MemorySample:
    """One reading of one device, with the budget lines to draw against it (bytes)."""

    device: str
    at: float
    used: int
    total: int
    limit: int  # what the manager's models may hold: min(threshold line, memory budget)
    threshold: int  # offload_threshold × total
    memory_budget: int | None  # inference.memory_budget_gb, when set
    manager: int  # what the manager's models hold
    per_task: Mapping[str, int] = field(default_factory=dict)
    host_tier: HostTierInfo | None = None  # read with the host's sample only (one per tick)


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """The selected models placed on one device, against its budget (bytes)."""

    device: str
    name: str
    total: int
    budget: int
    tasks: Mapping[str, int]
    others: int = 0  # what other processes' memory takes off the budget (already off it)

    @property
    def required(self) -> int:
        return sum(self.tasks.values())

    @property
    def fits(self) -> bool:
        return self.required <= self.budget


@dataclass(frozen=True, slots=True)
class BudgetReport:
    """What validate_memory_budget found: one plan per device, and whether all fit."""

    valid: bool
    plans: tuple[DevicePlan, ...]
    external_tasks: tuple[str, ...] = ()
    at: float = 0.0
    skipped: Mapping[str, str] = field(default_factory=dict)  # task → why it cannot load here


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device and the probe that reads it, for the status bar."""

    device: str
    name: str
    probe: str  # nvml | torch | host


@dataclass(frozen=True, slots=True)
class GpuProcessInfo:
    """A process on a GPU that is not vramdeck's, as NVML reports it."""

    pid: int
    name: str
    used: int | None  # bytes; None where NVML cannot tell (some drivers, other containers)


@dataclass(frozen=True, slots=True)
class GpuActivity:
    """What else happens on a device: its utilisation and the other processes on it."""

    device: str
    nvml: bool  # False: NVML cannot read this device, so nothing else here is known
    utilisation: int | None = None  # percent of time a kernel ran, over NVML's last period
    processes: tuple[GpuProcessInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanPreview:
    """What an action would do, before it is done: whether it fits, one sentence, one line per
    model it would move (evicted / parked / put to sleep, bytes, time to bring back), and for a
    warm-up the tasks that fit."""

    fits: bool
    summary: str
    moves: tuple[str, ...] = ()
    what_fits: tuple[str, ...] = ()

    @property
    def evicts(self) -> bool:
        return bool(self.moves)

    def tooltip(self) -> str:
        """The summary, then a line per move, the first `SHOWN_MOVES` of them: a warm-up of
        fifty tasks may move forty models, and a tooltip or question taller than the screen
        shows none of it."""
        shown = [f"• {m}" for m in self.moves[:SHOWN_MOVES]]
        if len(self.moves) > SHOWN_MOVES:
            shown.append(f"• … and {len(self.moves) - SHOWN_MOVES} more")
        return "\n".join(line for line in (self.summary, *shown) if line)


#: Moves a plan's tooltip lists one per line; the rest are counted.
SHOWN_MOVES = 8


class FixAction(Enum):
    """What a thrash fix's button does (the bridge maps the manager's `FixKind` by name)."""

    PIN = "pin"
    RAISE_BUDGET = "raise_budget"
    SWITCH = "switch"


@dataclass(frozen=True, slots=True)
class ThrashFix:
    """One click that stops a thrash: pin a task, raise the budget, or switch to a smaller
    option."""

    kind: FixAction
    task: str
    option: str | None
    budget_bytes: int | None
    summary: str


@dataclass(frozen=True, slots=True)
class HostTierInfo:
    """The host-RAM tier: whether parking is on, its use and budget, or why it is off."""

    enabled: bool
    used: int = 0
    budget: int = 0
    reason: str = ""
    parked: tuple[str, ...] = ()  # the tasks parked there now


__all__ = [
    "GIB",
    "BudgetReport",
    "DeviceInfo",
    "DevicePlan",
    "FixAction",
    "GpuActivity",
    "GpuProcessInfo",
    "HostTierInfo",
    "LogEntry",
    "MemorySample",
    "OptionInfo",
    "PlanPreview",
    "RequestCounts",
    "TaskRow",
    "ThrashFix",
]
