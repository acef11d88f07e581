"""The server loader against a real fake server: start, ready, measure, crash, stop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import psutil
import pytest

from tests.manager.fake_server import fake_command, gone, wait_gone
from tests.waiting import until
from vramdeck.manager.config import ModelConfig
from vramdeck.manager.loaders import (
    LoadContext,
    LoaderUnavailable,
    ServerHandle,
    ServerStartError,
    VllmLoader,
)
from vramdeck.manager.loaders.servers import ServerProcess, live_server_pids
from vramdeck.manager.loaders.servers import loader as server_loader
from vramdeck.manager.loaders.servers.commands import free_port
from vramdeck.manager.loaders.servers.environment import inherited
from vramdeck.manager.loaders.servers.health import http_status
from vramdeck.manager.memory import HOST, HostProbe

MB = 2**20


class Recorder:
    """A LoadContext whose callbacks record what they get."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.progress: list[tuple[float | None, str]] = []

    def context(self) -> LoadContext:
        return LoadContext(
            task="chat",
            device=HOST,
            probe=HostProbe(),
            device_total_bytes=psutil.virtual_memory().total,
            progress=lambda f, s: self.progress.append((f, s)),
            output=self.lines.append,
        )


def option(*flags: str, **fields: object) -> ModelConfig:
    d: dict[str, object] = {
        "model_id": "fake-model",
        "framework": "vllm",
        "vram_gb": 0.1,
        "server_command": fake_command(*flags),
        "startup_timeout_s": 10,
        "stop_timeout_s": 2,
    }
    return ModelConfig({**d, **fields}, name="fake")


async def start(*flags: str, **fields: object) -> tuple[VllmLoader, ServerHandle, Recorder]:
    loader, rec = VllmLoader(), Recorder()
    handle = await asyncio.wait_for(loader.load(option(*flags, **fields), rec.context()), 15)
    return loader, handle, rec


async def test_load_measure_and_unload() -> None:
    loader, handle, rec = await start("--hold-mb", "60")
    assert handle.base_url == f"http://127.0.0.1:{handle.port}/v1"
    assert handle.model == "fake-model"
    assert await handle.health()
    assert await http_status(f"{handle.url}/no-such-page") == 404
    assert await http_status(f"http://127.0.0.1:{free_port()}/health", 1.0) is None
    assert rec.lines[0] == f"fake server pid {handle.pid} starting for fake-model on port " + str(
        handle.port
    )
    assert rec.progress[0] == (None, f"starting vLLM on port {handle.port}")  # no fraction yet
    assert (None, "waiting for the health check (/health)") in rec.progress
    assert rec.progress[-1] == (1.0, "ready")
    nbytes = loader.footprint(handle, HOST)
    assert nbytes is not None and nbytes > 60 * MB
    assert loader.check(handle) is None
    assert live_server_pids() == [handle.pid]
    await loader.unload(handle, HOST)
    assert gone(handle.pid)
    assert not await handle.health()
    assert loader.check(handle) is None  # stopped on purpose: no crash
    assert live_server_pids() == []
    await loader.unload(handle, HOST)  # a second unload is harmless


async def test_slow_start_reports_progress_and_waits_for_200() -> None:
    began = time.monotonic()
    _, handle, rec = await start("--start-delay", "1", "--listen-early")
    assert time.monotonic() - began >= 1.0  # /health answered 503 until then
    fractions = [f for f, _ in rec.progress if f is not None]
    assert fractions == sorted(fractions) and 0.5 in fractions
    assert "Loading weights: 50% (2/4)" in rec.lines
    await VllmLoader().unload(handle, HOST)


async def test_a_server_that_exits_fails_with_its_last_lines() -> None:
    loader, rec = VllmLoader(), Recorder()
    with pytest.raises(ServerStartError) as info:
        await loader.load(option("--fail-after", "0.2", "--spawn-child"), rec.context())
    err = info.value
    assert err.exit_code == 3
    assert "vLLM exited with exit code 3 before it was ready; last output:" in str(err)
    assert "simulated start failure" in str(err)
    assert err.last_output[-1] == "RuntimeError: simulated start failure: CUDA out of memory"
    server_pid = int(rec.lines[0].split()[3])
    child_pid = int(next(line for line in rec.lines if line.startswith("child pid")).split()[2])
    assert wait_gone([server_pid, child_pid], 3) == []


async def test_a_server_that_never_answers_times_out_and_is_stopped() -> None:
    loader, rec = VllmLoader(), Recorder()
    began = time.monotonic()
    with pytest.raises(ServerStartError, match=r"did not answer /health within startup_timeout_s"):
        await loader.load(option("--start-delay", "30", startup_timeout_s=0.5), rec.context())
    assert time.monotonic() - began < 4
    assert gone(int(rec.lines[0].split()[3]))


async def test_a_crash_is_reported_by_check() -> None:
    loader, handle, _ = await start("--crash-after", "0.3", "--spawn-child")
    child = [pid for pid in handle.process.pids() if pid != handle.pid]
    assert loader.check(handle) is None
    await asyncio.wait_for(asyncio.shield(handle.process.exited), 5)
    died = loader.check(handle)
    assert died is not None
    code, lines = died
    assert code == 3
    assert lines[-1] == "fatal: simulated crash, exiting with 3"
    assert loader.footprint(handle, HOST) is None  # no process tree left to measure
    await loader.unload(handle, HOST)  # what the manager does after a crash: cleans up
    assert wait_gone([handle.pid, *child], 3) == []


async def test_a_server_that_ignores_sigterm_is_killed_after_stop_timeout() -> None:
    loader, handle, _ = await start("--ignore-sigterm", stop_timeout_s=0.5)
    began = time.monotonic()
    await loader.unload(handle, HOST)
    took = time.monotonic() - began
    assert 0.5 <= took < 3
    assert handle.returncode == -9
    assert gone(handle.pid)


async def test_unload_stops_the_servers_children(tmp_path: Path) -> None:
    term = tmp_path / "term"
    loader, handle, _ = await start("--spawn-child", "--term-file", str(term))
    pids = handle.process.pids()
    assert len(pids) == 2
    await loader.unload(handle, HOST)
    assert wait_gone(pids, 0.5) == []
    assert term.read_text() == "terminated\n"  # SIGTERM first: it could shut down cleanly
    assert handle.returncode == 0


async def test_a_cancelled_load_leaves_nothing() -> None:
    loader, rec = VllmLoader(), Recorder()
    load = asyncio.ensure_future(loader.load(option("--start-delay", "30"), rec.context()))
    await until(lambda: bool(rec.lines), "the server printed its first line")
    load.cancel()
    with pytest.raises(asyncio.CancelledError):
        await load
    assert wait_gone([int(rec.lines[0].split()[3])], 3) == []


TOKEN = "hf_Fake0Secret0Token0123"
PROCESS_KEY = "sk-process-key-4567"


async def test_secrets_are_masked_in_output_last_lines_and_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_SERVICE_KEY", PROCESS_KEY)  # the manager's own environment
    flags = ["--print-env", "HF_TOKEN", "--print-env", "MY_SERVICE_KEY", "--print-env", "HF_HOME"]
    opt = option(
        *flags,
        "--fail-after",
        "0.2",
        server_env={"HF_TOKEN": TOKEN, "HF_HOME": "/models/hf"},
        inherit_env=["MY_SERVICE_KEY"],  # a key of the manager's reaches a server only so
    )
    loader, rec = VllmLoader(), Recorder()
    with pytest.raises(ServerStartError) as info:
        await loader.load(opt, rec.context())
    err = info.value
    for text in (*rec.lines, *err.last_output, str(err), *(s for _, s in rec.progress)):
        assert TOKEN not in text and PROCESS_KEY not in text
    assert "environment: HF_TOKEN=***" in rec.lines  # ServerOutput events
    assert "environment: MY_SERVICE_KEY=***" in err.last_output
    assert "environment: HF_HOME=/models/hf" in rec.lines  # not a secret: shown
    assert loader.secrets(opt) == [TOKEN, PROCESS_KEY]


def environ_of(pid: int) -> dict[str, str]:
    """The environment `pid` was started with, as the kernel keeps it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if item)


CANARIES = {"ANTHROPIC_API_KEY": "canary-anthropic-1", "OPENAI_API_KEY": "canary-openai-2",
            "PANEL_ONLY_SETTING": "canary-3"}  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc/PID/environ")
async def test_a_server_starts_with_only_the_environment_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MY_TOOL_HOME", "/opt/tool")
    monkeypatch.setenv("HF_HOME", "/models/hf")
    monkeypatch.setenv("NCCL_DEBUG", "INFO")
    loader, handle, _ = await start(
        "--spawn-child",
        inherit_env=["MY_TOOL_HOME", "NOT_SET_ANYWHERE"],
        server_env={"SERVER_SETTING": "on", "HF_HOME": "/srv/hf"},
    )
    try:
        pids = handle.process.pids()
        assert len(pids) == 2  # the server and its worker
        for pid in pids:
            env = environ_of(pid)
            assert not set(CANARIES) & set(env), f"pid {pid} got {set(CANARIES) & set(env)}"
            assert not any(v in CANARIES.values() for v in env.values())
            assert env["MY_TOOL_HOME"] == "/opt/tool"  # listed in inherit_env
            assert env["SERVER_SETTING"] == "on"  # server_env adds …
            assert env["HF_HOME"] == "/srv/hf"  # … and overrides
            assert env["NCCL_DEBUG"] == "INFO"  # the GPU stack's settings pass
            assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
            assert "NOT_SET_ANYWHERE" not in env
            beyond_the_basics = {name for name in env if not inherited(name)}
            assert beyond_the_basics == {"MY_TOOL_HOME", "SERVER_SETTING", "PYTHONUNBUFFERED"}
    finally:
        await loader.unload(handle, HOST)


async def test_secrets_are_masked_in_a_running_servers_last_lines() -> None:
    loader, handle, rec = await start("--print-env", "VLLM_API_KEY", server_env={
        "VLLM_API_KEY": TOKEN})  # fmt: skip
    assert "environment: VLLM_API_KEY=***" in handle.last_output
    assert not any(TOKEN in line for line in rec.lines)
    await loader.unload(handle, HOST)


async def test_a_taken_port_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        monkeypatch.setattr(server_loader, "free_port", lambda: next(ports, None) or free_port())
        loader, handle, rec = await start()
        assert handle.port != taken.getsockname()[1]
        assert any("was taken meanwhile" in line for line in rec.lines)
        await loader.unload(handle, HOST)


async def test_a_program_that_cannot_run_fails_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "srv"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    opt = option(server_command=[str(script), "--host", "{host}", "--port", "{port}"])
    with pytest.raises(ServerStartError, match="No such file or directory"):
        await VllmLoader().load(opt, Recorder().context())


async def test_a_program_that_vanished_fails_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "srv"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    opt = option(server_command=[str(script), "--host", "{host}", "--port", "{port}"])
    script.unlink()  # after the config was read
    with pytest.raises(LoaderUnavailable, match=r"server_command's program .*srv' was not found"):
        await VllmLoader().load(opt, Recorder().context())
    with pytest.raises(FileNotFoundError):
        await ServerProcess.start([str(script)], {}, on_line=print)
    assert live_server_pids() == []
