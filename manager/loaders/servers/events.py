"""The events a server's sleep and wake make, for the manager to emit.

They live here until the manager's event module takes them (it is being reworked elsewhere);
each subclasses the manager's `Event`, so a subscriber to every event gets them too. Build them
from the loader's reports with `slept` (ModelSlept, or SleepFailed) and `woken`.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramdeck.manager.events import Event

from .sleep import SleepLevel, SleepReport, WakeReport


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSlept(Event):
    """A server was put to sleep instead of stopped, and the probe saw its memory come back."""

    task: str
    option: str
    model_id: str
    device: str
    level: SleepLevel
    freed_bytes: int
    held_bytes: int | None
    waited_s: float
    duration_s: float
    verified: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelWoken(Event):
    """A sleeping server was woken for a load instead of started cold."""

    task: str
    option: str
    model_id: str
    device: str
    level: SleepLevel
    taken_bytes: int
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SleepFailed(Event):
    """A sleep failed or kept the memory: the server was stopped, and will be from now on."""

    task: str
    option: str
    model_id: str
    device: str
    held_before: int | None
    held_after: int | None
    reason: str


def slept(report: SleepReport, *, task: str, option: str, model_id: str, device: str) -> Event:
    """The event for `report`: ModelSlept, or SleepFailed when the server was stopped instead."""
    if not report.slept:
        return SleepFailed(
            task=task,
            option=option,
            model_id=model_id,
            device=device,
            held_before=report.held_before,
            held_after=report.held_after,
            reason=report.reason,
        )
    return ModelSlept(
        task=task,
        option=option,
        model_id=model_id,
        device=device,
        level=report.level,
        freed_bytes=report.freed_bytes,
        held_bytes=report.held_after,
        waited_s=report.waited_s,
        duration_s=report.duration_s,
        verified=report.verified,
    )


def woken(report: WakeReport, *, task: str, option: str, model_id: str, device: str) -> ModelWoken:
    """The event for a wake's `report`."""
    return ModelWoken(
        task=task,
        option=option,
        model_id=model_id,
        device=device,
        level=report.level,
        taken_bytes=report.taken_bytes,
        duration_s=report.duration_s,
    )
