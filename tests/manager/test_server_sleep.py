"""Servers that sleep instead of stopping, against the real fake server: its memory really goes
and comes back (RSS through the host probe), the routes are called in order, a sleep waits for
requests in flight, and a server that keeps its memory or dies asleep is dealt with."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import psutil
import pytest

from tests.manager.fake_server import fake_command, wait_gone
from vramdeck.manager.config import ConfigError, ModelConfig, parse_config
from vramdeck.manager.events import Event
from vramdeck.manager.loaders import LoadContext, ServerHandle, ServerLoader, VllmLoader
from vramdeck.manager.loaders.servers import (
    SERVER_SLEEP_LEVEL,
    ModelSlept,
    ModelWoken,
    ServerAsleepError,
    SglangLoader,
    SleepError,
    SleepFailed,
    SleepLevel,
    SleepState,
)
from vramdeck.manager.loaders.servers.events import slept, woken
from vramdeck.manager.loaders.servers.health import http_call, http_status
from vramdeck.manager.memory import HOST, HostProbe

MB = 2**20
HOLD_MB = 150


class Recorder:
    """A LoadContext whose output is kept, with `extra` as given."""

    def __init__(self, **extra: Any) -> None:
        self.lines: list[str] = []
        self.extra = extra

    def context(self) -> LoadContext:
        return LoadContext(
            task="chat",
            device=HOST,
            probe=HostProbe(),
            device_total_bytes=psutil.virtual_memory().total,
            output=self.lines.append,
            extra=self.extra,
        )

    def calls(self) -> list[str]:
        """The sleep and wake routes the fake printed that it served, in order."""
        names: tuple[str, ...] = (
            "sleep",
            "wake_up",
            "collective_rpc",
            "reset_prefix_cache",
            "release_",
            "resume_",
        )
        names += ("update_weights",)
        return [line for line in self.lines if line.startswith(names)]


def option(*flags: str, framework: str = "vllm", **fields: object) -> ModelConfig:
    d: dict[str, object] = {
        "model_id": "fake-model",
        "framework": framework,
        "vram_gb": 0.2,
        "server_command": fake_command("--hold-mb", str(HOLD_MB), *flags),
        "startup_timeout_s": 10,
        "stop_timeout_s": 2,
    }
    return ModelConfig({**d, **fields}, name="fake")


async def start(
    loader: ServerLoader, opt: ModelConfig, rec: Recorder | None = None
) -> tuple[ServerHandle, Recorder]:
    rec = rec or Recorder()
    handle = await asyncio.wait_for(loader.load(opt, rec.context()), 15)
    return handle, rec


async def is_sleeping(handle: ServerHandle) -> object:
    status, reply = await http_call("GET", handle.url + "/is_sleeping", timeout_s=5)
    assert status == 200
    assert isinstance(reply, dict)
    return reply["is_sleeping"]


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def test_sleep_gives_the_memory_back_and_the_wake_takes_it_again() -> None:
    loader = VllmLoader()
    handle, rec = await start(loader, option(sleep_level=1))
    try:
        assert handle.sleep_level is SleepLevel.OFFLOAD and loader.can_suspend(handle)
        server = psutil.Process(handle.pid)
        assert server.cmdline()[-1] == "--enable-sleep-mode"
        assert server.environ()["VLLM_SERVER_DEV_MODE"] == "1"
        awake_rss = rss(handle.pid)
        report = await loader.suspend(handle, rec.context())
        assert report.slept and report.verified and report.level is SleepLevel.OFFLOAD
        assert report.held_before is not None and report.held_before >= HOLD_MB * MB
        assert report.freed_bytes >= 0.9 * HOLD_MB * MB
        assert rss(handle.pid) < awake_rss - 0.9 * HOLD_MB * MB  # really gone from the process
        assert handle.asleep and handle.running and await is_sleeping(handle) is True
        assert loader.footprint(handle, HOST) == report.held_after  # what the manager will see
        event = slept(report, task="chat", option="fake", model_id="fake-model", device=HOST)
        assert isinstance(event, ModelSlept) and isinstance(event, Event)
        assert event.freed_bytes == report.freed_bytes and event.kind == "ModelSlept"

        wake = await loader.resume(handle, rec.context())
        assert handle.state is SleepState.AWAKE and await is_sleeping(handle) is False
        assert wake.taken_bytes >= 0.9 * HOLD_MB * MB
        assert rss(handle.pid) >= awake_rss - 10 * MB
        assert await handle.health()
        assert await http_status(handle.base_url + "/models") == 200
        event = woken(wake, task="chat", option="fake", model_id="fake-model", device=HOST)
        assert isinstance(event, ModelWoken) and event.taken_bytes == wake.taken_bytes
        assert rec.calls() == ["sleep: level 1", "wake_up"]

        # And again: a woken server sleeps as well as a fresh one.
        again = await loader.suspend(handle, rec.context())
        assert again.slept and again.freed_bytes >= 0.9 * HOLD_MB * MB
    finally:
        await loader.unload(handle, HOST)
    assert wait_gone([handle.pid]) == []


async def test_level_2_reloads_the_weights_in_vllms_order() -> None:
    loader = VllmLoader()
    handle, rec = await start(loader, option(sleep_level=2))
    try:
        assert (await loader.suspend(handle, rec.context())).slept
        await loader.resume(handle, rec.context())
        assert rec.calls() == [
            "sleep: level 2",
            "wake_up: weights",
            "collective_rpc: reload_weights",
            "wake_up: kv_cache",
            "reset_prefix_cache",
        ]
    finally:
        await loader.unload(handle, HOST)


@pytest.mark.parametrize(
    ("level", "flags", "wake_calls"),
    [
        (1, ["--enable-memory-saver", "--enable-weights-cpu-backup"], ["resume_memory_occupation"]),
        (2, ["--enable-memory-saver"], ["resume_memory_occupation", "update_weights_from_disk"]),
    ],
)
async def test_sglang_sleeps_with_its_memory_saver(
    level: int, flags: list[str], wake_calls: list[str]
) -> None:
    loader = SglangLoader()
    opt = option(framework="sglang", sleep_level=level)
    assert loader.command(opt, HOST, 1234, 0)[-1] != flags[-1]  # not in the option's command
    handle, rec = await start(loader, opt)
    try:
        argv = psutil.Process(handle.pid).cmdline()
        assert argv[-len(flags) :] == flags and "--enable-sleep-mode" not in argv
        report = await loader.suspend(handle, rec.context())
        assert report.slept and report.freed_bytes >= 0.9 * HOLD_MB * MB
        wake = await loader.resume(handle, rec.context())
        assert wake.taken_bytes >= 0.9 * HOLD_MB * MB and await handle.health()
        assert rec.calls() == ["release_memory_occupation", *wake_calls]
    finally:
        await loader.unload(handle, HOST)


async def test_the_inference_default_applies_unless_the_option_says() -> None:
    loader = VllmLoader()
    by_default = Recorder(**{SERVER_SLEEP_LEVEL: 1})
    handle, rec = await start(loader, option(), by_default)
    try:
        assert handle.sleep_level is SleepLevel.OFFLOAD
        assert (await loader.suspend(handle, rec.context())).slept
    finally:
        await loader.unload(handle, HOST)
    handle, rec = await start(loader, option(sleep_level=0), Recorder(**{SERVER_SLEEP_LEVEL: 2}))
    try:
        argv = psutil.Process(handle.pid).cmdline()
        assert handle.sleep_level is SleepLevel.STOP and "--enable-sleep-mode" not in argv
        assert not loader.can_suspend(handle)
        with pytest.raises(SleepError, match="started without sleep mode"):
            await loader.suspend(handle, rec.context())
        assert handle.running and handle.state is SleepState.AWAKE
    finally:
        await loader.unload(handle, HOST)


async def test_whether_a_server_would_sleep_is_known_before_it_starts() -> None:
    """A preview asks `would_suspend` of the servers it has not started; the answer is what
    `can_suspend` says of the server once it runs."""
    cases = [
        (VllmLoader(), option(sleep_level=1), Recorder()),
        (VllmLoader(), option(), Recorder(**{SERVER_SLEEP_LEVEL: 2})),
        (VllmLoader(), option(sleep_level=0), Recorder(**{SERVER_SLEEP_LEVEL: 2})),
        (VllmLoader(), option(), Recorder()),
    ]
    answers = []
    for loader, opt, rec in cases:
        before = loader.would_suspend(opt, rec.context())
        handle, _ = await start(loader, opt, rec)
        try:
            answers.append((before, loader.can_suspend(handle)))
        finally:
            await loader.unload(handle, HOST)
    assert answers == [(True, True), (True, True), (False, False), (False, False)]


def test_the_default_commands_sleep_on_cuda_only() -> None:
    bare = {"model_id": "m", "sleep_level": 2}
    for loader, framework in ((VllmLoader(), "vllm"), (SglangLoader(), "sglang")):
        opt = ModelConfig({**bare, "framework": framework}, name="m")
        on_gpu = LoadContext(task="t", device="cuda:0", probe=HostProbe())
        on_cpu = LoadContext(task="t", device=HOST, probe=HostProbe())
        assert loader.sleep_level(opt, on_gpu) is SleepLevel.DISCARD
        assert loader.sleep_level(opt, on_cpu) is SleepLevel.STOP


class BlindProbe(HostProbe):
    """A probe that cannot see processes (NVML in a PID namespace reads 0)."""

    def process_bytes(self, device: str, pids: Any) -> int | None:
        return 0


async def test_where_the_probe_cannot_see_the_servers_word_decides() -> None:
    loader = VllmLoader()
    rec = Recorder()
    blind = LoadContext(task="chat", device=HOST, probe=BlindProbe(), output=rec.lines.append)
    handle = await asyncio.wait_for(
        loader.load(option("--sleep-keeps-memory", sleep_level=1), blind), 15
    )
    try:
        report = await loader.suspend(handle, blind)
        assert report.slept and not report.verified and report.held_before is None
        assert report.freed_bytes == 0 and handle.asleep
        wake = await loader.resume(handle, blind)
        assert wake.taken_bytes == 0 and handle.state is SleepState.AWAKE
    finally:
        await loader.unload(handle, HOST)


async def test_a_server_that_keeps_its_memory_is_stopped_and_remembered() -> None:
    loader = VllmLoader()
    leaky = option("--sleep-keeps-memory", sleep_level=1)
    handle, rec = await start(loader, leaky)
    report = await loader.suspend(handle, rec.context(), verify_timeout_s=0.3)
    assert not report.slept and not handle.running
    assert "still held" in report.reason and "after its sleep" in report.reason
    assert report.freed_bytes == report.held_before  # the stop gave it all back
    assert wait_gone([handle.pid]) == []
    assert loader.leaks_on_sleep(leaky)
    assert any(report.reason in line and "stopped it" in line for line in rec.lines)
    event = slept(report, task="chat", option="fake", model_id="fake-model", device=HOST)
    assert isinstance(event, SleepFailed) and event.reason == report.reason

    # Its next server starts without sleep mode, and an eviction stops it.
    handle, rec = await start(loader, leaky)
    try:
        assert handle.sleep_level is SleepLevel.STOP and not loader.can_suspend(handle)
        assert not loader.would_suspend(leaky, rec.context())
        assert "--enable-sleep-mode" not in psutil.Process(handle.pid).cmdline()
    finally:
        await loader.unload(handle, HOST)
    assert not loader.leaks_on_sleep(option(sleep_level=1))  # another option is not affected
    with pytest.raises(SleepError, match="leaked on sleep before"):
        await loader.suspend(handle, rec.context())


async def test_a_refused_sleep_stops_the_server_with_the_servers_answer() -> None:
    loader = VllmLoader()
    # The development routes are off without VLLM_SERVER_DEV_MODE=1: vLLM answers 404.
    opt = option(sleep_level=1, server_env={"VLLM_SERVER_DEV_MODE": "0"})
    handle, rec = await start(loader, opt)
    report = await loader.suspend(handle, rec.context())
    assert not report.slept and not handle.running
    assert "POST /sleep?level=1&mode=wait answered 404" in report.reason
    assert loader.leaks_on_sleep(opt)


async def test_a_sleep_waits_for_the_request_in_flight() -> None:
    loader = VllmLoader()
    handle, rec = await start(loader, option(sleep_level=1))
    try:
        with handle.requests.hold():
            sleeping = asyncio.create_task(loader.suspend(handle, rec.context()))
            await handle.requests.sleep_waiting.wait()
            # The sleep is waiting: the server is untouched and still serves.
            assert not sleeping.done() and handle.state is SleepState.AWAKE
            assert await is_sleeping(handle) is False and rec.calls() == []
            assert await http_status(handle.base_url + "/models") == 200
        report = await sleeping
        assert report.slept and await is_sleeping(handle) is True
        with (
            pytest.raises(ServerAsleepError, match="asleep; wake it first"),
            handle.requests.hold(),
        ):
            pass
        await loader.resume(handle, rec.context())
        with handle.requests.hold():
            assert handle.requests.count == 1
    finally:
        await loader.unload(handle, HOST)


async def test_a_busy_server_is_not_put_to_sleep_after_the_drain_timeout() -> None:
    loader = VllmLoader()
    handle, rec = await start(loader, option(sleep_level=1))
    try:
        with handle.requests.hold():
            with pytest.raises(SleepError, match=r"1 request\(s\) still in flight"):
                await loader.suspend(handle, rec.context(), drain_timeout_s=0.01)
            assert handle.state is SleepState.AWAKE and not handle.requests.closed
            assert await is_sleeping(handle) is False
        assert loader.can_suspend(handle) and not loader.leaks_on_sleep(option(sleep_level=1))
    finally:
        await loader.unload(handle, HOST)


async def test_a_server_killed_while_asleep_is_noticed() -> None:
    loader = VllmLoader()
    handle, rec = await start(loader, option(sleep_level=1))
    try:
        assert (await loader.suspend(handle, rec.context())).slept
        os.kill(handle.pid, signal.SIGKILL)
        await asyncio.wait_for(asyncio.shield(handle.process.exited), 5)
        crashed = loader.check(handle)  # the manager's crash path, as for an awake server
        assert crashed is not None and crashed[0] == -signal.SIGKILL
        with pytest.raises(SleepError, match=r"exited while asleep \(signal SIGKILL\)"):
            await loader.resume(handle, rec.context())
        assert not loader.can_suspend(handle)
    finally:
        await loader.unload(handle, HOST)


async def test_a_failed_wake_stops_the_server_and_says_why() -> None:
    loader = VllmLoader()
    handle, rec = await start(loader, option("--wake-fails", sleep_level=1))
    try:
        assert (await loader.suspend(handle, rec.context())).slept
        with pytest.raises(SleepError, match=r"POST /wake_up answered 500: .*CUDA out of memory"):
            await loader.resume(handle, rec.context())
        assert not handle.running and wait_gone([handle.pid]) == []
        assert loader.check(handle) is None  # a stop, not a crash
    finally:
        await loader.unload(handle, HOST)


async def test_a_framework_without_sleep_routes_is_stopped() -> None:
    class Plain(ServerLoader):
        frameworks = ("plain",)

    loader = Plain()
    handle, _ = await start(loader, option(framework="plain", sleep_level=1))
    try:
        assert handle.sleep_level is SleepLevel.STOP and not loader.can_suspend(handle)
    finally:
        await loader.unload(handle, HOST)


def test_sleep_levels_in_the_config_are_checked_with_their_line() -> None:
    text = (
        "models:\n  chat:\n    options:\n      a:\n        model_id: m\n        framework: vllm\n"
        "        sleep_level: {level}\ninference:\n  server_sleep_level: {default}\n"
    )
    _, tasks, inference = parse_config(text.format(level=2, default=1))
    assert tasks["chat"].options["a"].sleep_level == 2 and inference.server_sleep_level == 1
    _, tasks, inference = parse_config(text.format(level="null", default="null"))
    assert tasks["chat"].options["a"].sleep_level is None and inference.server_sleep_level == 0
    with pytest.raises(
        ConfigError, match=r":7: models\.chat\.options\.a\.sleep_level: expected 0 \(stop\), 1"
    ):
        parse_config(text.format(level=3, default=0))
    with pytest.raises(ConfigError, match=r":9: inference\.server_sleep_level: .* got bool True"):
        parse_config(text.format(level=1, default="true"))
