"""No server outlives its manager: SIGKILL, Ctrl+C, a plain exit, and leftovers of a dead one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manager.fake_server import fake_command, gone, wait_gone
from vramdeck.manager.loaders.servers.records import ServerRecords

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux signals")

REPO = Path(__file__).resolve().parents[2]

MANAGER_SCRIPT = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[3])
from vramdeck.manager import Ledger, ModelManager
from vramdeck.manager.loaders import VllmLoader

async def main():
    manager = ModelManager(sys.argv[1], loaders=[VllmLoader()], ledger=Ledger(None))
    handle = await manager.load_model("chat")
    print(json.dumps(handle.process.pids()), flush=True)
    if sys.argv[2] == "wait":
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_manager(tmp_path: Path, then: str, *flags: str) -> tuple[subprocess.Popen[str], Any]:
    """A separate process runs a manager that loads one fake server; returns it and the pids."""
    config = tmp_path / "models.yaml"
    option = {
        "model_id": "fake-model",
        "framework": "vllm",
        "vram_gb": 0.1,
        "device": "cpu",
        "server_command": fake_command("--hold-mb", "20", "--spawn-child", *flags),
        "stop_timeout_s": 3,
    }
    config.write_text(yaml.safe_dump({"models": {"chat": {"options": {"fake": option}}}}))
    script = tmp_path / "run_manager.py"
    script.write_text(MANAGER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(config), then, str(REPO)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server is ready (or the script died)
    assert line, f"the manager script failed (exit {proc.wait(10)})"
    pids = json.loads(line)
    assert len(pids) == 2 and not any(gone(pid) for pid in pids)
    return proc, pids


def test_sigkill_of_the_manager_takes_its_servers(tmp_path: Path) -> None:
    proc, pids = start_manager(tmp_path, "wait")
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    assert wait_gone(pids, 3) == [], "a server outlived its SIGKILLed manager"


def test_ctrl_c_stops_servers_gracefully(tmp_path: Path) -> None:
    term = tmp_path / "term"
    proc, pids = start_manager(tmp_path, "wait", "--term-file", str(term))
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    assert wait_gone(pids, 3) == []
    assert term.read_text() == "terminated\n"  # SIGTERM at exit, not pdeathsig's SIGKILL


def test_a_manager_that_exits_without_shutdown_stops_its_servers(tmp_path: Path) -> None:
    term = tmp_path / "term"
    proc, pids = start_manager(tmp_path, "exit", "--term-file", str(term))
    assert proc.wait(10) == 0
    assert wait_gone(pids, 3) == []
    assert term.read_text() == "terminated\n"


def test_workers_left_by_a_killed_manager_are_reaped_later(tmp_path: Path) -> None:
    # A worker that does not ask to die with its server (older vLLM releases) outlives a
    # SIGKILLed manager; the next manager finds the record and kills it.
    proc, (server, worker) = start_manager(tmp_path, "wait", "--child", "orphan")
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    assert wait_gone([server], 3) == []
    records = ServerRecords()  # the same file: the state folder the manager script used
    try:
        time.sleep(0.2)
        assert not gone(worker)
        assert records.reap_orphans() == [worker]
        assert wait_gone([worker], 3) == []
        assert records.reap_orphans() == []  # the record is gone too
    finally:
        if not gone(worker):
            os.kill(worker, signal.SIGKILL)


def test_records_of_a_live_manager_are_kept() -> None:
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    records = ServerRecords()
    try:
        records.add(sleeper.pid)  # recorded as ours, and we are alive
        assert records.reap_orphans() == []
        assert not gone(sleeper.pid)
    finally:
        records.remove(sleeper.pid)
        sleeper.kill()
        sleeper.wait()
