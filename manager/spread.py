"""A load that spans several devices (a server with tensor parallelism): which devices, its
share of each, and room made on every one of them, all or nothing.

A one-device load goes through here unchanged: one share, the device's own `make_room`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .config import ModelConfig
from .devices import DevicePool
from .errors import InsufficientMemoryError, ModelLoadError
from .eviction import Eviction
from .loaders.base import AsyncLoader
from .loaders.servers.handle import ServerMemory
from .loaders.servers.loader import ServerLoader
from .loaders.servers.placement import PlacementError, server_devices, split_evenly
from .memory import DeviceReading, is_cuda


async def occupied(
    task: str, option: ModelConfig, loader: AsyncLoader, device: str, pool: DevicePool
) -> tuple[str, ...]:
    """The devices `option` holds memory on when placed on `device`, the first first (see
    `devices_for`); the pool is asked for the machine's devices only for a server."""
    if not may_span(loader):
        return (device,)
    return devices_for(task, option, loader, device, await pool.names_async())


def devices_for(
    task: str, option: ModelConfig, loader: AsyncLoader, device: str, present: Sequence[str]
) -> tuple[str, ...]:
    """The devices `option` holds memory on when placed on `device`, among `present`; pure,
    so loads and previews (manager/preview.py) decide here alike.

    Only a server can span devices. An ``auto`` server whose tensor-parallel ranks do not fit
    from the chosen card starts at the first CUDA card instead. ModelLoadError, naming what is
    missing, when the machine has fewer devices than the option asks for."""
    if not may_span(loader):
        return (device,)
    try:
        try:
            return server_devices(option, device, present)
        except PlacementError:
            cuda = [d for d in present if is_cuda(d)]
            if option.device != "auto" or not cuda or cuda[0] == device:
                raise
            return server_devices(option, cuda[0], present)
    except PlacementError as exc:
        raise ModelLoadError(task, f"{option.name}: {exc}") from None


def may_span(loader: AsyncLoader) -> bool:
    """Whether a model of `loader` may hold memory on more than one device (only a server)."""
    return isinstance(loader, ServerLoader)


def shares(required: int, devices: Sequence[str]) -> dict[str, int]:
    """What a load of `required` bytes takes on each of `devices`: evenly split, as the server
    splits its weights and cache over its tensor-parallel ranks."""
    return split_evenly(required, devices) if len(devices) > 1 else {devices[0]: required}


async def make_room_on_each(
    eviction: Eviction, pool: DevicePool, need: Mapping[str, int], *, for_task: str
) -> DeviceReading:
    """Make room for `need` (device → bytes) on every device; call with all their locks held
    (`DevicePool.locks`). All or nothing: when one device cannot make room, InsufficientMemory
    Error says which, and nothing is evicted anywhere. Returns the first device's reading."""
    if len(need) > 1:
        for device, nbytes in need.items():
            reading = await pool.read_async(device)
            plan = eviction.plan_room(device, reading, nbytes)
            if not plan.fits:
                reason = eviction.no_room(device, reading, nbytes, plan.need, [])
                raise InsufficientMemoryError(
                    for_task,
                    f"a server on {len(need)} devices ({', '.join(need)}) {reason}; nothing was "
                    "evicted on any of them",
                )
    readings = [await eviction.make_room(d, n, for_task=for_task) for d, n in need.items()]
    return readings[0]


def by_device(model: object, measured: int) -> dict[str, int]:
    """A server's last per-device reading (device → bytes), or `measured` split evenly over its
    devices where the probe saw none of them; empty for any other model."""
    memory = getattr(model, "memory", None)
    if not isinstance(memory, ServerMemory):
        return {}
    return memory.by_device() or shares(measured, memory.devices)


__all__ = ["by_device", "devices_for", "make_room_on_each", "may_span", "occupied", "shares"]
