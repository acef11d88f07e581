"""The planner's budget check as a value: what each selected option needs and where the planner
places it (`manager.planning.check_selection` makes it), and the seed's dict built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .units import GIB

if TYPE_CHECKING:
    from .config import ModelConfig
    from .planning import DevicePlan


@dataclass(frozen=True)
class Requirement:
    """What one task's selected option needs, in bytes (0 when it holds no device memory or
    cannot load here)."""

    option: ModelConfig
    device: str  # as configured: auto, cpu, cuda:N
    bytes: int
    measured: bool
    holds_memory: bool


@dataclass(frozen=True)
class BudgetCheck:
    """Whether the selected models of all tasks fit their devices' budgets together, as the
    planner places them; `plans` are the primary devices and those a model is placed on;
    `skipped`: task → why its option cannot load here (not counted)."""

    plans: dict[str, DevicePlan]
    requirements: dict[str, Requirement]
    primary: tuple[str, ...]
    threshold: float
    memory_budget_gb: float | None
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return all(p.fits for p in self.plans.values())

    @property
    def total_bytes(self) -> int:
        """The primary devices' total memory."""
        return sum(p.room.total for d, p in self.plans.items() if d in self.primary)

    @property
    def external(self) -> tuple[str, ...]:
        """The tasks whose selected option holds no local memory."""
        return tuple(t for t, r in self.requirements.items() if not r.holds_memory)

    def as_seed_dict(self) -> dict[str, Any]:
        """The seed's ``validate_memory_budget`` keys (valid, total_vram_gb, total_required_gb,
        threshold, max_allowed_gb, model_requirements), plus ``memory_budget_gb``, ``devices``
        (the plan per device) and ``skipped``; sizes in GiB."""
        primary = [p for d, p in self.plans.items() if d in self.primary]
        return {
            "valid": self.valid,
            "total_vram_gb": self.total_bytes / GIB,
            "total_required_gb": sum(r.bytes for r in self.requirements.values()) / GIB,
            "threshold": self.threshold,
            "max_allowed_gb": sum(p.room.budget for p in primary) / GIB,
            "memory_budget_gb": self.memory_budget_gb,
            "model_requirements": {
                task: {
                    "model_id": r.option.model_id,
                    "option": r.option.name,
                    "vram_gb": r.bytes / GIB,
                    "estimated_gb": r.option.vram_gb,
                    "measured": r.measured,
                    "external": not r.holds_memory,
                }
                for task, r in self.requirements.items()
            },
            "devices": {d: p.as_dict() for d, p in self.plans.items()},
            "skipped": dict(self.skipped),
        }


__all__ = ["BudgetCheck", "Requirement"]
