"""Budget arithmetic, pure: how much a device may hold, and how much must go for a model to fit.

A device's limit is ``offload_threshold × total`` counting every process on it; separately, the
manager's own models may hold at most ``memory_budget_gb`` per device when that is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import GIB, InferenceConfig
from .memory import HOST, DeviceReading, is_cuda


def device_limit(total: int, inference: InferenceConfig) -> int:
    """Bytes all processes together may hold on a device of `total` bytes."""
    return int(inference.offload_threshold * total)


def manager_limit(total: int, inference: InferenceConfig) -> int:
    """Bytes the manager's own models may hold on a device of `total` bytes."""
    cap = inference.memory_budget_bytes
    limit = device_limit(total, inference)
    return limit if cap is None else min(cap, limit)


def shortfall(
    reading: DeviceReading,
    *,
    own: int,
    required: int,
    inference: InferenceConfig,
    pending_on_device: int = 0,
    pending_in_budget: int = 0,
) -> int:
    """Bytes that must be freed on the device before `required` more fit (≤ 0: it fits now).

    `own` is what the manager's loaded models hold there. Loads in flight count too: in the
    device's reading only for what it does not show yet (`pending_on_device`), and wholly
    against the manager's budget (`pending_in_budget`), which `own` does not include.
    """
    limit = device_limit(reading.total, inference)
    over_device = reading.used + pending_on_device + required - limit
    cap = inference.memory_budget_bytes
    if cap is None:
        return over_device
    return max(over_device, own + pending_in_budget + required - cap)


@dataclass
class DevicePlan:
    """The selected models placed on one device, against its budget."""

    device: str
    name: str
    total: int
    budget: int
    tasks: dict[str, int] = field(default_factory=dict)

    @property
    def required(self) -> int:
        return sum(self.tasks.values())

    @property
    def fits(self) -> bool:
        return self.required <= self.budget

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "total_gb": self.total / GIB,
            "budget_gb": self.budget / GIB,
            "required_gb": self.required / GIB,
            "fits": self.fits,
            "tasks": {t: b / GIB for t, b in self.tasks.items()},
        }


def plan_placement(
    requirements: Mapping[str, tuple[str, int]],
    readings: Mapping[str, DeviceReading],
    inference: InferenceConfig,
) -> dict[str, DevicePlan]:
    """Place each task's model (task → (wanted device, bytes)) as the manager would.

    Fixed devices are honoured; ``auto`` goes, largest first, to the CUDA device with the most
    budget left, or to ``cpu`` when there is no CUDA device.
    """
    plans = {
        d: DevicePlan(d, r.name, r.total, manager_limit(r.total, inference))
        for d, r in readings.items()
    }
    cuda = [d for d in plans if is_cuda(d)]
    fixed = {t: v for t, v in requirements.items() if v[0] != "auto"}
    auto = sorted(
        ((t, v) for t, v in requirements.items() if v[0] == "auto"), key=lambda item: -item[1][1]
    )
    for task, (device, need) in fixed.items():
        plan = plans.get(device)
        if plan is None:
            plan = plans.setdefault(device, DevicePlan(device, "not present", 0, 0))
        plan.tasks[task] = need
    for task, (_, need) in auto:
        pool = cuda or [HOST]
        best = max(pool, key=lambda d: plans[d].budget - plans[d].required)
        plans[best].tasks[task] = need
    return plans


__all__ = ["DevicePlan", "device_limit", "manager_limit", "plan_placement", "shortfall"]
