"""Which devices a server occupies: its tensor-parallel size and its CUDA_VISIBLE_DEVICES.

A vLLM or SGLang server started with ``--tensor-parallel-size N`` (``--tp N``, ``--tp-size N``)
holds memory on N GPUs; one given several cards in ``server_env``'s ``CUDA_VISIBLE_DEVICES``
uses them. Pure: the manager asks here before it makes room, the loader before it starts the
server, so both count the same devices.
"""

from __future__ import annotations

from collections.abc import Sequence

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.memory import device_index, is_cuda

#: The flags by which vLLM and SGLang take their tensor-parallel size.
TP_FLAGS = ("--tensor-parallel-size", "--tp", "--tp-size")
#: The most devices one server may ask for (a typo such as ``--tp 80`` is refused, not tried).
MAX_DEVICES = 64


class PlacementError(ValueError):
    """An option asks for devices this machine does not have, or says so unreadably."""


def tensor_parallel_size(command: Sequence[str] | None) -> int | None:
    """The tp size `command` passes (``--tp 2`` or ``--tp=2``), None when it passes none."""
    args = list(command or ())
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag not in TP_FLAGS:
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        if not value.isdigit() or not 1 <= int(value) <= MAX_DEVICES:
            raise PlacementError(
                f"server_command: {flag} takes a whole number of GPUs from 1 to {MAX_DEVICES}, "
                f"got {value!r}"
            )
        return int(value)
    return None


def visible_devices(env: dict[str, str]) -> list[str] | None:
    """The cards ``CUDA_VISIBLE_DEVICES`` names in `env` as cuda:N, None when it is not set."""
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items or not all(item.isdigit() for item in items) or len(set(items)) < len(items):
        raise PlacementError(
            f"server_env.CUDA_VISIBLE_DEVICES: expected distinct GPU indices such as '0,1', "
            f"got {raw!r}"
        )
    return [f"cuda:{int(item)}" for item in items]


def server_devices(
    option: ModelConfig, first: str, present: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The devices `option`'s server occupies when placed on `first`, first device first.

    ``CUDA_VISIBLE_DEVICES`` in ``server_env`` names them (its first tp-size cards when a tp size
    is given); else a tp size of N takes `first` and the N-1 cards after it. With `present`
    (the machine's devices), PlacementError when it asks for more than there are.
    """
    tp = tensor_parallel_size(option.server_command)
    named = visible_devices(option.server_env)
    if named is not None:
        if tp is not None and tp > len(named):
            raise PlacementError(
                f"server_command asks for {tp} GPUs but server_env.CUDA_VISIBLE_DEVICES names "
                f"only {len(named)}: {', '.join(named)}"
            )
        chosen = tuple(named[: tp or len(named)])
        if len(chosen) == 1:
            return (first,)  # one card: the manager's placement, as before
    elif tp is None or tp == 1:
        return (first,)
    elif not is_cuda(first):
        raise PlacementError(f"--tensor-parallel-size {tp} needs CUDA devices, not {first}")
    else:
        start = device_index(first)
        chosen = tuple(f"cuda:{start + i}" for i in range(tp))
    if present is not None:
        missing = [d for d in chosen if d not in present]
        if missing:
            cuda = [d for d in present if is_cuda(d)]
            raise PlacementError(
                f"the server needs {len(chosen)} GPUs ({', '.join(chosen)}) but "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not present here "
                f"({len(cuda)} CUDA device(s): {', '.join(cuda) or 'none'})"
            )
    return chosen


def split_evenly(nbytes: int, devices: Sequence[str]) -> dict[str, int]:
    """`nbytes` as the server splits it over its tensor-parallel ranks: evenly (the remainder,
    a few bytes, on the first)."""
    share, rest = divmod(nbytes, len(devices))
    return {d: share + (rest if i == 0 else 0) for i, d in enumerate(devices)}


__all__ = [
    "MAX_DEVICES",
    "TP_FLAGS",
    "PlacementError",
    "server_devices",
    "split_evenly",
    "tensor_parallel_size",
    "visible_devices",
]
