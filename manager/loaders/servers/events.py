"""Build the manager's sleep and wake events (in `vramdeck.manager.events`) from the server
loader's reports: `slept` (ModelSlept, or SleepFailed) and `woken` (ModelWoken)."""

from __future__ import annotations

from vramdeck.manager.events import Event, ModelSlept, ModelWoken, SleepFailed

from .sleep import SleepReport, WakeReport


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
        bytes=report.freed_bytes,
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
        bytes=report.taken_bytes,
        duration_s=report.duration_s,
    )


__all__ = ["ModelSlept", "ModelWoken", "SleepFailed", "slept", "woken"]
