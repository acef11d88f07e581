"""Budget arithmetic, pure: how much a device may hold, and how much must go for a model to fit.

A device's limit is ``offload_threshold × total`` counting every process on it; separately, the
manager's own models may hold at most ``memory_budget_gb`` per device when that is set.
"""

from __future__ import annotations

from .config import InferenceConfig
from .memory import DeviceReading


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


__all__ = ["device_limit", "manager_limit", "shortfall"]
