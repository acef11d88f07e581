"""Putting one running server to sleep and waking it, verified by the manager's probe.

A sleep waits for the requests in flight, calls the framework's route, then watches the server's
processes until at least `RELEASED_SHARE` of what they held is free (within a bounded wait): a
server that says it sleeps but keeps its memory (SGLang #4336) is stopped instead. A wake calls
the routes, waits until the server answers as awake, and measures what it holds again. Any
failure leaves no process running.
"""

from __future__ import annotations

import asyncio
import time

from .handle import ServerHandle
from .process import describe_exit
from .sleep import SleepError, SleepLevel, SleepReport, SleepState, WakeReport

#: A sleep counts as done once this share of what the server held is free again. vLLM keeps its
#: CUDA contexts and graphs (about 0.5 to 1 GiB a process) and frees the rest.
RELEASED_SHARE = 0.5
_POLL_S = 0.05
MIB = 2**20


def why_not_sleep(handle: ServerHandle) -> str | None:
    """Why `handle` cannot be put to sleep now, or None when it can."""
    where = f"{handle.framework} server on port {handle.port}"
    if handle.sleep_level is SleepLevel.STOP or handle.sleep_api is None:
        return f"{where} was started without sleep mode (sleep_level 0)"
    if not handle.running:
        return f"{where} is not running ({describe_exit(handle.returncode)})"
    if handle.state is not SleepState.AWAKE:
        return f"{where} is {handle.state.value}"
    return None


async def put_to_sleep(
    handle: ServerHandle, *, verify_timeout_s: float, drain_timeout_s: float | None = None
) -> SleepReport:
    """Sleep at the handle's level once no request is in flight; SleepError if it cannot start
    (not running, not in sleep mode, still busy after `drain_timeout_s`). A sleep that fails or
    keeps the memory stops the server: the report says ``slept=False`` and why."""
    problem = why_not_sleep(handle)
    if problem:
        raise SleepError(problem)
    where = f"{handle.framework} server on port {handle.port}"
    try:
        waited = await handle.requests.drain_and_close(
            f"{where} is asleep; wake it first", drain_timeout_s
        )
    except TimeoutError:
        raise SleepError(
            f"{where}: {handle.requests.count} request(s) still in flight after "
            f"{drain_timeout_s:g} s; not put to sleep"
        ) from None
    handle.state = SleepState.FALLING_ASLEEP
    started = time.monotonic()
    before = await asyncio.to_thread(handle.memory.measure)
    try:
        assert handle.sleep_api is not None
        await handle.sleep_api.sleep(handle, handle.sleep_level)
        after, verified = await _watch_release(handle, before, verify_timeout_s)
    except SleepError as exc:
        return await _stopped_instead(handle, before, None, waited, started, str(exc))
    except BaseException:
        await handle.process.stop(handle.stop_timeout_s)
        raise
    if not verified and before is not None:
        held = f"{(after or 0) / MIB:.0f} MiB of {before / MIB:.0f} MiB"
        reason = f"{where} still held {held} {verify_timeout_s:g} s after its sleep"
        return await _stopped_instead(handle, before, after, waited, started, reason)
    handle.state = SleepState.ASLEEP
    level = handle.sleep_level
    duration = time.monotonic() - started
    return SleepReport(True, level, before, after, waited, duration, verified=before is not None)


async def _watch_release(
    handle: ServerHandle, before: int | None, timeout_s: float
) -> tuple[int | None, bool]:
    """What the server holds once at least RELEASED_SHARE of `before` is free (True), or at the
    end of `timeout_s` (False). Where the probe cannot see, the server's word decides."""
    assert handle.sleep_api is not None
    if before is None:
        says = await handle.sleep_api.is_sleeping(handle)
        if says is False:
            raise SleepError(f"{handle.framework} server says it is not sleeping after its sleep")
        return None, False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    target = before * (1 - RELEASED_SHARE)
    while True:
        after = await asyncio.to_thread(handle.memory.measure)
        if not handle.running:
            raise SleepError(
                f"{handle.framework} server exited while falling asleep "
                f"({describe_exit(handle.returncode)})"
            )
        if after is not None and after <= target:
            return after, True
        if loop.time() >= deadline:
            return after, False
        await asyncio.sleep(_POLL_S)


async def _stopped_instead(
    handle: ServerHandle,
    before: int | None,
    after: int | None,
    waited: float,
    started: float,
    reason: str,
) -> SleepReport:
    await handle.process.stop(handle.stop_timeout_s)
    duration = time.monotonic() - started
    level = handle.sleep_level
    return SleepReport(False, level, before, after, waited, duration, verified=False, reason=reason)


async def wake_up(handle: ServerHandle) -> WakeReport:
    """Wake a sleeping server and wait until it answers as awake (``wake_timeout_s``).

    SleepError when it is not asleep, exited while asleep, or the wake fails; after a failed
    wake the server is stopped (the manager then starts it cold)."""
    where = f"{handle.framework} server on port {handle.port}"
    if handle.state is not SleepState.ASLEEP:
        raise SleepError(f"{where} is {handle.state.value}, not sleeping")
    if not handle.running:
        raise SleepError(f"{where} exited while asleep ({describe_exit(handle.returncode)})")
    assert handle.sleep_api is not None
    handle.state = SleepState.WAKING
    started = time.monotonic()
    asleep = await asyncio.to_thread(handle.memory.current)
    try:
        await handle.sleep_api.wake(handle, handle.sleep_level, handle.wake_timeout_s)
        await _until_awake(handle, started + handle.wake_timeout_s)
        held = await asyncio.to_thread(handle.memory.measure)
    except BaseException:
        await handle.process.stop(handle.stop_timeout_s)
        raise
    handle.state = SleepState.AWAKE
    handle.requests.open()
    return WakeReport(handle.sleep_level, asleep, held, time.monotonic() - started)


async def _until_awake(handle: ServerHandle, deadline: float) -> None:
    """Poll until the server answers its health check and does not say it sleeps."""
    assert handle.sleep_api is not None
    delay = 0.005
    while True:
        if not handle.running:
            raise SleepError(
                f"{handle.framework} server exited while waking up "
                f"({describe_exit(handle.returncode)})"
            )
        if await handle.health() and await handle.sleep_api.is_sleeping(handle) is not True:
            return
        if time.monotonic() >= deadline:
            raise SleepError(
                f"{handle.framework} server on port {handle.port} did not answer as awake "
                f"within {handle.wake_timeout_s:g} s of its wake-up"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.2)
