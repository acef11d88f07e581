"""Manager events: immutable values with past-tense names (their bases and the hub that
delivers them are in `event_base`).

Every event is emitted on the event loop's thread (workers return values, they never emit), so a
subscriber may touch loop-bound state, including Qt objects when the loop is qasync's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .event_base import Event, EventHub, ModelEvent, RemovalReason, TaskEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLoading(ModelEvent):
    """A load started: room was made and the loader is running."""

    required_bytes: int

    @property
    def size_bytes(self) -> int | None:
        return self.required_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadProgress(TaskEvent):
    """A loader reported progress; `fraction` is None when it cannot tell how far it is."""

    stage: str
    fraction: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLoaded(ModelEvent):
    """A model finished loading; `measured_bytes` is what it really took on `device`."""

    measured_bytes: int
    estimated_bytes: int
    duration_s: float

    @property
    def size_bytes(self) -> int | None:
        return self.measured_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadFailed(ModelEvent):
    """A load failed and was rolled back; nothing of it is held any more."""

    reason: str
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadCancelled(ModelEvent):
    """A load in flight was cancelled (``cancel_load``): what it took is freed, no process of it
    is left, and the task is back to unloaded."""

    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelWarmedUp(ModelEvent):
    """A model was loaded and ran one small inference; `first_inference_s` is that inference's
    latency (None: loaded only, as an external API or a model that neither generates nor
    embeds, or the inference failed: `error` says how; the model stays loaded), `load_s` how
    long its load took."""

    first_inference_s: float | None
    load_s: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRemoved(ModelEvent):
    """A model left its device (`ModelUnloaded` or `ModelEvicted`). `cause` says why, `reason`
    in words ("room for embeddings"), `error` how the unload failed (its accounting is freed
    either way)."""

    freed_bytes: int
    cause: RemovalReason
    reason: str
    duration_s: float
    error: str | None = None

    @property
    def size_bytes(self) -> int | None:
        return self.freed_bytes

    @property
    def description(self) -> str:
        """Why, in words, and what went wrong if the unload failed."""
        return f"{self.reason}; the unload failed: {self.error}" if self.error else self.reason


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelUnloaded(ModelRemoved):
    """A model was unloaded on request, when idle, for a switch, a config reload or shutdown."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEvicted(ModelRemoved):
    """A model was evicted: for room (`detail` names the task that needed it), by request, or to
    bring a device back under its budget."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelParked(ModelEvent):
    """An evicted in-process model was parked in host RAM instead of dropped: `bytes` were
    copied there in `duration_s`, and the tier now holds `host_used_bytes`."""

    bytes: int
    duration_s: float
    host_used_bytes: int = 0

    @property
    def size_bytes(self) -> int | None:
        return self.bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRestored(ModelEvent):
    """A parked model was copied back to its device for a load, instead of loaded cold."""

    bytes: int
    duration_s: float

    @property
    def size_bytes(self) -> int | None:
        return self.bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSlept(ModelEvent):
    """A server was put to sleep instead of stopped, and the probe saw its memory come back:
    `bytes` freed, `held_bytes` still held (its contexts), `waited_s` for requests in flight."""

    bytes: int
    duration_s: float
    level: int  # a SleepLevel: 1 weights to host RAM, 2 weights discarded
    held_bytes: int | None = None
    waited_s: float = 0.0
    verified: bool = False

    @property
    def freed_bytes(self) -> int:
        return self.bytes

    @property
    def size_bytes(self) -> int | None:
        return self.bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelWoken(ModelEvent):
    """A sleeping server was woken for a load instead of started cold; it took `bytes` again."""

    bytes: int
    duration_s: float
    level: int

    @property
    def taken_bytes(self) -> int:
        return self.bytes

    @property
    def size_bytes(self) -> int | None:
        return self.bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SleepFailed(ModelEvent):
    """A sleep failed or kept the memory: the server was stopped, and will be from now on."""

    held_before: int | None
    held_after: int | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryNotReturned(TaskEvent):
    """After an unload the device did not show the memory free within the timeout (a leak?)."""

    device: str
    expected_bytes: int
    returned_bytes: int

    @property
    def size_bytes(self) -> int | None:
        return self.expected_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExceeded(TaskEvent):
    """After `task` loaded and measured more than its estimate, vramdeck's models hold more than
    `device`'s budget and nothing more could be evicted; `reason` says what holds it."""

    device: str
    held_bytes: int
    budget_bytes: int
    reason: str

    @property
    def size_bytes(self) -> int | None:
        return self.held_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCrashed(ModelEvent):
    """A loaded model's process died on its own; its accounting was freed."""

    exit_code: int | None
    last_output: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOutput(TaskEvent):
    """A line that a model's server process printed while starting or running."""

    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectionChanged(TaskEvent):
    """A task's selected option changed from `old` to `new`."""

    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchFailed(TaskEvent):
    """Switching a task to option `new` failed; `old` is selected (and loaded) again."""

    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PinChanged(TaskEvent):
    """A task was pinned (never evicted) or unpinned."""

    pinned: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloaded(Event):
    """The configuration was read again from `path`."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MemorySampled(Event):
    """One reading of a device: what every process holds, and what each loaded model holds.

    `budget_bytes` is what vramdeck's models may hold there: the smaller of `threshold_bytes`
    (offload_threshold × total) and `memory_budget_bytes` (memory_budget_gb, when set)."""

    device: str
    used_bytes: int
    total_bytes: int
    budget_bytes: int
    manager_bytes: int
    threshold_bytes: int = 0
    memory_budget_bytes: int | None = None
    per_task: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Thrashing(Event):
    """Models that keep pushing each other out: one was evicted and reloaded more than
    ``inference.thrash_reloads`` times within ``thrash_window_s``; `seconds_lost` is what those
    reloads took (see `ModelManager.thrash_fixes` for the ways out)."""

    tasks: tuple[str, ...]
    reloads: int
    window_s: float
    seconds_lost: float


__all__ = [
    "BudgetExceeded",
    "ConfigReloaded",
    "Event",
    "EventHub",
    "LoadCancelled",
    "LoadFailed",
    "LoadProgress",
    "MemoryNotReturned",
    "MemorySampled",
    "ModelCrashed",
    "ModelEvent",
    "ModelEvicted",
    "ModelLoaded",
    "ModelLoading",
    "ModelParked",
    "ModelRemoved",
    "ModelRestored",
    "ModelSlept",
    "ModelUnloaded",
    "ModelWarmedUp",
    "ModelWoken",
    "PinChanged",
    "RemovalReason",
    "SelectionChanged",
    "ServerOutput",
    "SleepFailed",
    "SwitchFailed",
    "TaskEvent",
    "Thrashing",
]
