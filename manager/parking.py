"""Move an in-process model's weights between its device and host RAM without reloading it.

Parking copies every parameter and buffer into (pinned, where a GPU allows it) host memory and
points the module at the copies, so the device memory can be freed; restoring copies them back
with non-blocking copies from the pinned buffers. The module object stays the same, tied weights
stay tied (one copy per shared tensor) and dtypes are kept, so a restored model computes exactly
what it computed before it was parked.

torch is imported inside the functions: ``import vramdeck.manager`` stays torch-free.
"""

from __future__ import annotations

from typing import Any

HOST = "cpu"


def unparkable_reason(model: Any) -> str | None:
    """Why `model` cannot be parked (None when it can): only plain torch modules on one device.

    Quantized weights (bitsandbytes) and models that accelerate spread over several devices are
    dropped instead: copying their tensors does not rebuild their packed state or their hooks.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        return "not a torch module"
    if getattr(model, "is_quantized", False) or getattr(model, "quantization_method", None):
        return "quantized weights are dropped, not parked"
    device_map = getattr(model, "hf_device_map", None)
    if device_map and len({str(d) for d in device_map.values()}) > 1:
        return "spread over several devices"
    return None


def model_device(model: Any) -> str:
    """The device of the model's first parameter or buffer (``cpu`` for a model without any)."""
    for tensor in _tensors(model):
        return str(tensor.device)
    return HOST


def park(model: Any, *, pin: bool) -> int:
    """Copy `model`'s tensors to host memory (pinned when `pin`) and return the bytes copied.

    The device copies are released when this returns; the caller frees the allocator's cache.
    """
    import torch

    copied = 0

    def to_host(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal copied
        host = torch.empty_like(tensor, device=HOST, pin_memory=pin)
        host.copy_(tensor, non_blocking=pin)
        copied += tensor.numel() * tensor.element_size()
        return host

    _apply_once(model, to_host)
    if pin and torch.cuda.is_available():
        torch.cuda.synchronize()
    return copied


def restore(model: Any, device: str) -> int:
    """Copy a parked `model`'s tensors back to `device`; returns the bytes copied."""
    import torch

    copied = 0
    target = torch.device(device)

    def to_device(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal copied
        copied += tensor.numel() * tensor.element_size()
        return tensor.to(target, non_blocking=tensor.is_pinned())

    _apply_once(model, to_device)
    if target.type == "cuda":
        torch.cuda.synchronize(target)
    return copied


def _apply_once(model: Any, fn: Any) -> None:
    """`Module._apply(fn)`, with `fn` run once per shared tensor so ties survive the move.

    `_apply` visits a parameter shared by two modules twice (after the first visit it already
    points at the copy): the memo, by object and by storage, hands later visits the first copy.
    """
    import torch

    by_object: dict[int, torch.Tensor] = {}
    by_storage: dict[tuple[int, torch.dtype, tuple[int, ...], tuple[int, ...]], torch.Tensor] = {}

    def once(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) in by_object:
            return by_object[id(tensor)]
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if key not in by_storage:
            by_storage[key] = fn(tensor)
        by_object[id(tensor)] = by_storage[key]
        return by_storage[key]

    with torch.no_grad():
        model._apply(once)


def _tensors(model: Any) -> Any:
    yield from model.parameters()
    yield from model.buffers()


__all__ = ["model_device", "park", "restore", "unparkable_reason"]
