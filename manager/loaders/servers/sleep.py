"""Servers that sleep instead of stopping: the levels, each framework's routes, and the reports.

A sleeping server keeps its process (CUDA context, compiled graphs, the loaded tokenizer) and
gives its device memory back; waking it takes a fraction of a cold start.

- vLLM, started with ``--enable-sleep-mode`` and ``VLLM_SERVER_DEV_MODE=1`` (the routes are
  development routes; vramdeck's servers listen on loopback only): ``POST /sleep?level=N``,
  ``POST /wake_up``, ``GET /is_sleeping``. Level 2 discards the weights, so the wake reloads them
  in vLLM's documented order: ``/wake_up?tags=weights``, ``/collective_rpc`` with
  ``reload_weights``, ``/wake_up?tags=kv_cache``, then ``/reset_prefix_cache``.
- SGLang, started with ``--enable-memory-saver`` (and ``--enable-weights-cpu-backup`` for
  level 1, else released weights are lost): ``POST /release_memory_occupation`` and
  ``POST /resume_memory_occupation``; level 2 reloads the weights with
  ``/update_weights_from_disk``. SGLang has no "is it sleeping" route: the memory tells.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .health import http_call

if TYPE_CHECKING:
    from .handle import ServerHandle

#: A control call (sleep, wake) that takes longer than this has failed (level 1 copies the
#: weights to host RAM: tens of GB at several GB/s).
CALL_TIMEOUT_S = 120.0


class SleepLevel(enum.IntEnum):
    """What a managed server does when it is evicted."""

    STOP = 0  #: stop the process (a later load starts it cold)
    OFFLOAD = 1  #: sleep, weights copied to host RAM, KV cache discarded
    DISCARD = 2  #: sleep, weights and KV cache discarded; the wake reloads the weights


class SleepState(enum.Enum):
    """Where a running server stands."""

    AWAKE = "awake"
    FALLING_ASLEEP = "falling asleep"
    ASLEEP = "sleeping"
    WAKING = "waking"


class SleepError(RuntimeError):
    """A sleep or wake could not be done; the message names the server and what answered."""


@dataclass(frozen=True)
class SleepReport:
    """What one `ServerLoader.suspend` did.

    Attributes
    ----------
    slept : bool
        True: the server sleeps and holds `held_after`. False: it was stopped instead (see
        `reason`); the manager treats it as unloaded.
    level : SleepLevel
    held_before, held_after : int | None
        What its processes held on the device before and after (None: the probe cannot see).
    waited_s : float
        How long the sleep waited for requests in flight.
    duration_s : float
        From the sleep call to the memory shown free (or to the stop), waits excluded.
    verified : bool
        Whether the probe saw the memory come back (False where it cannot see the processes).
    reason : str
        Why it was stopped instead, in words; empty when it slept.
    """

    slept: bool
    level: SleepLevel
    held_before: int | None
    held_after: int | None
    waited_s: float
    duration_s: float
    verified: bool
    reason: str = ""

    @property
    def kept(self) -> bool:
        """The loader protocol's name (`Suspension.kept`) for `slept`."""
        return self.slept

    @property
    def freed_bytes(self) -> int:
        """What the sleep (or the stop) gave back, as far as the probe saw."""
        if self.held_before is None:
            return 0
        after = 0 if not self.slept else (self.held_after or 0)
        return max(0, self.held_before - after)


@dataclass(frozen=True)
class WakeReport:
    """What one `ServerLoader.resume` did: what the server holds again, and how long it took."""

    level: SleepLevel
    held_asleep: int | None
    held_bytes: int | None
    duration_s: float

    @property
    def taken_bytes(self) -> int:
        """What the wake took on the device (0 where the probe cannot see)."""
        if self.held_bytes is None:
            return 0
        return max(0, self.held_bytes - (self.held_asleep or 0))


class SleepApi:
    """One framework's way to put its server to sleep and wake it: start flags and routes."""

    name: ClassVar[str] = "server"

    def start_flags(self, level: SleepLevel) -> list[str]:
        """Flags the server must start with to be able to sleep at `level`."""
        return []

    def start_env(self, level: SleepLevel) -> dict[str, str]:
        """Variables the server must start with to be able to sleep at `level`."""
        return {}

    async def sleep(self, handle: ServerHandle, level: SleepLevel) -> None:
        raise NotImplementedError

    async def wake(self, handle: ServerHandle, level: SleepLevel, timeout_s: float) -> None:
        raise NotImplementedError

    async def is_sleeping(self, handle: ServerHandle) -> bool | None:
        """What the server says (None: it has no route for it)."""
        return None


async def _post(
    handle: ServerHandle, path: str, body: object = None, timeout_s: float = CALL_TIMEOUT_S
) -> object:
    """POST `path` on the server; SleepError unless it answers 200."""
    try:
        status, reply = await http_call("POST", handle.url + path, json=body, timeout_s=timeout_s)
    except OSError as exc:
        raise SleepError(f"{handle.framework} server on port {handle.port}: {exc}") from exc
    if status != 200:
        raise SleepError(
            f"{handle.framework} server on port {handle.port}: POST {path} answered {status}"
            + (f": {str(reply)[:200]}" if reply is not None else "")
        )
    return reply


class VllmSleep(SleepApi):
    """vLLM's sleep mode (``--enable-sleep-mode``, development routes)."""

    name: ClassVar[str] = "vLLM"

    def start_flags(self, level: SleepLevel) -> list[str]:
        return ["--enable-sleep-mode"] if level else []

    def start_env(self, level: SleepLevel) -> dict[str, str]:
        return {"VLLM_SERVER_DEV_MODE": "1"} if level else {}

    async def sleep(self, handle: ServerHandle, level: SleepLevel) -> None:
        # mode=wait: newer vLLMs abort requests in flight by default; older ones ignore it.
        await _post(handle, f"/sleep?level={int(level)}&mode=wait")

    async def wake(self, handle: ServerHandle, level: SleepLevel, timeout_s: float) -> None:
        if level is SleepLevel.DISCARD:
            # The weights' memory first, the weights from disk, and only then the KV cache,
            # so that the reload never competes with the cache for memory.
            await _post(handle, "/wake_up?tags=weights", timeout_s=timeout_s)
            await _post(handle, "/collective_rpc", {"method": "reload_weights"}, timeout_s)
            await _post(handle, "/wake_up?tags=kv_cache", timeout_s=timeout_s)
            await _post(handle, "/reset_prefix_cache", timeout_s=timeout_s)
        else:
            await _post(handle, "/wake_up", timeout_s=timeout_s)

    async def is_sleeping(self, handle: ServerHandle) -> bool | None:
        try:
            status, reply = await http_call("GET", handle.url + "/is_sleeping", timeout_s=5.0)
        except OSError:
            return None
        if status != 200 or not isinstance(reply, dict) or "is_sleeping" not in reply:
            return None
        return bool(reply["is_sleeping"])


class SglangSleep(SleepApi):
    """SGLang's memory saver (``--enable-memory-saver``)."""

    name: ClassVar[str] = "SGLang"

    def start_flags(self, level: SleepLevel) -> list[str]:
        if level is SleepLevel.OFFLOAD:
            return ["--enable-memory-saver", "--enable-weights-cpu-backup"]
        return ["--enable-memory-saver"] if level else []

    async def sleep(self, handle: ServerHandle, level: SleepLevel) -> None:
        await _post(handle, "/release_memory_occupation", {})

    async def wake(self, handle: ServerHandle, level: SleepLevel, timeout_s: float) -> None:
        await _post(handle, "/resume_memory_occupation", {}, timeout_s)
        if level is SleepLevel.DISCARD:  # the released weights are gone: read them again
            await _post(
                handle, "/update_weights_from_disk", {"model_path": handle.model}, timeout_s
            )
