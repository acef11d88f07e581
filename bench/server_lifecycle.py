"""What the manager adds to a server's own start and stop, and how fast its memory shows free.

Both paths run the fake server (tests/manager/fake_server.py), alternately, in one run:

- plain: ``Popen`` in its own session, poll ``/health`` every millisecond until 200 (start);
  SIGTERM to the group, ``wait()`` (stop). This is the server's own time.
- manager: ``load_model`` (start) and ``unload_model`` (stop) of the same server.

The ratio manager / plain (medians) is printed for start, stop and both; goal ≤ 1.05. By
default the fake "loads weights" for 1 s before it listens (``--start-delay``), as any real
server does for far longer; ``--start-delay 0`` measures against a bare Python start. Then,
in separate rounds (a 1 kHz sampler would disturb the timing), the time from the server's exit
to the device showing its memory free, both seen by the same sampler.

    .venv/bin/python bench/server_lifecycle.py [--rounds 15] [--hold-mb 200] [--start-delay 1]
    python bench/server_lifecycle.py --device cuda:0 --cuda-mb 4096   # on a GPU machine
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vramdeck.manager import Ledger, ModelManager  # noqa: E402
from vramdeck.manager.loaders import ServerHandle, VllmLoader  # noqa: E402
from vramdeck.manager.loaders.servers.commands import free_port  # noqa: E402
from vramdeck.manager.loaders.servers.group import alive  # noqa: E402
from vramdeck.manager.memory import SystemProbe  # noqa: E402

FAKE = ROOT / "tests" / "manager" / "fake_server.py"
MEASURED: list[int] = []  # what the manager measured the server to hold, per round


def fake_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--hold-mb", str(args.hold_mb), "--start-delay", str(args.start_delay)]
    return flags + (["--cuda-mb", str(args.cuda_mb)] if args.cuda_mb else [])


def environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.device.startswith("cuda"):
        env.update(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=args.device[5:] or "0")
    return env


def healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def plain_round(args: argparse.Namespace) -> tuple[float, float]:
    """The fake server's own start and stop times: until it prints that it listens (no polling
    that would compete for the CPU), and from SIGTERM to its exit (a blocking wait)."""
    port = free_port()
    argv = [sys.executable, str(FAKE), "--port", str(port), *fake_flags(args)]
    began = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=environment(args), stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Application startup complete."):
            break
    else:
        raise RuntimeError(f"the fake server exited with {proc.wait()}")
    started = time.perf_counter() - began
    assert healthy(port)
    began = time.perf_counter()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
    stopped = time.perf_counter() - began
    proc.stdout.close()
    return started, stopped


async def manager_round(manager: ModelManager) -> tuple[float, float]:
    began = time.perf_counter()
    await manager.load_model("bench")
    started = time.perf_counter() - began
    began = time.perf_counter()
    await manager.unload_model("bench")
    return started, time.perf_counter() - began


class Sampler(threading.Thread):
    """Reads the device and whether `pid` runs, as fast as it can, until stopped."""

    def __init__(self, probe: SystemProbe, device: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.probe, self.device, self.pid = probe, device, pid
        self.samples: list[tuple[float, bool, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            running = alive(self.pid)
            used = self.probe.read(self.device).used
            self.samples.append((time.perf_counter(), running, used))
            time.sleep(0.0005)

    def exit_to_free(self, nbytes: int) -> float | None:
        """Seconds from the first sample without the process to the first sample showing 90 %
        of `nbytes` free again (negative: free before the process was gone)."""
        first = sorted(used for _, _, used in self.samples[:20])
        baseline = first[len(first) // 2]  # before the stop
        exited = next((t for t, running, _ in self.samples if not running), None)
        freed = next((t for t, _, used in self.samples if baseline - used >= 0.9 * nbytes), None)
        return None if exited is None or freed is None else freed - exited


async def exit_to_free_round(
    manager: ModelManager, probe: SystemProbe, device: str, held_mb: float
) -> float | None:
    handle: ServerHandle = await manager.load_model("bench")
    MEASURED.append(manager.model_memory_usage["bench"])
    nbytes = int(held_mb * 2**20)  # what the fake holds privately (RSS also counts shared pages)
    sampler = Sampler(probe, device, handle.pid)
    sampler.start()
    await asyncio.sleep(0.05)
    await manager.unload_model("bench")
    await asyncio.sleep(3.0)  # host RAM statistics can lag a second behind (vmstat folding)
    sampler.done.set()
    sampler.join()
    return sampler.exit_to_free(nbytes)


def write_config(folder: Path, args: argparse.Namespace) -> Path:
    option = {
        "model_id": "fake-model",
        "framework": "vllm",
        "vram_gb": (args.hold_mb + args.cuda_mb + 100) / 1024,
        "device": args.device,
        "server_command": [
            sys.executable,
            str(FAKE),
            "--host",
            "{host}",
            "--port",
            "{port}",
            *fake_flags(args),
        ],
        "stop_timeout_s": 10,
    }
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {"bench": {"options": {"fake": option}}}}))
    return path


def ms(values: list[float]) -> str:
    if min(values) < 0:
        low, high = min(values) * 1000, max(values) * 1000
        return f"median {statistics.median(values) * 1000:8.1f} ms  (from {low:.1f} to {high:.1f})"
    return f"median {statistics.median(values) * 1000:8.1f} ms  (min {min(values) * 1000:.1f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hold-mb", type=float, default=200)
    parser.add_argument("--cuda-mb", type=float, default=0)
    parser.add_argument("--start-delay", type=float, default=1.0)
    parser.add_argument("--free-rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("VRAMDECK_STATE_DIR", tmp)
        config = write_config(Path(tmp), args)
        probe = SystemProbe.detect()
        manager = ModelManager(
            config, probe=probe, loaders=[VllmLoader()], ledger=Ledger(Path(tmp) / "l.json")
        )
        try:
            await manager_round(manager)  # warm-up: imports, the first records, the probe
            plain_round(args)
            results: dict[str, list[Any]] = {"plain": [], "manager": []}
            for _ in range(args.rounds):
                results["plain"].append(plain_round(args))
                results["manager"].append(await manager_round(manager))
            gaps = [
                await exit_to_free_round(manager, probe, args.device, args.cuda_mb or args.hold_mb)
                for _ in range(args.free_rounds)
            ]
        finally:
            await manager.shutdown()
    report(args, results, gaps, probe.read(args.device).name)


def report(
    args: argparse.Namespace, results: dict[str, list[Any]], gaps: list[float | None], card: str
) -> None:
    held = f"{args.hold_mb:g} MB host" + (f" + {args.cuda_mb:g} MB GPU" if args.cuda_mb else "")
    print(
        f"fake server holding {held}, start delay {args.start_delay:g} s, device {args.device} "
        f"({card}), {args.rounds} rounds"
    )
    ratios = {}
    for i, phase in enumerate(("start", "stop")):
        plain = [r[i] for r in results["plain"]]
        managed = [r[i] for r in results["manager"]]
        print(f"{phase:5}  plain   {ms(plain)}")
        print(f"{phase:5}  manager {ms(managed)}")
        ratios[phase] = statistics.median(managed) / statistics.median(plain)
        overhead = (statistics.median(managed) - statistics.median(plain)) * 1000
        print(f"{phase:5}  ratio manager / plain {ratios[phase]:.3f}  (+{overhead:.1f} ms)")
    plain_total = statistics.median([sum(r) for r in results["plain"]])
    managed_total = statistics.median([sum(r) for r in results["manager"]])
    print(f"start+stop ratio manager / plain {managed_total / plain_total:.3f}  (goal ≤ 1.05)")
    if MEASURED:
        mib = statistics.median(MEASURED) / 2**20
        print(f"measured footprint of the server's processes on {args.device}: {mib:.0f} MiB")
    seen = [g for g in gaps if g is not None]
    where = f"exit → memory free on {args.device}:"
    if seen:
        print(f"{where} {ms(seen)}  (seen in {len(seen)} of {len(gaps)} rounds within 3 s)")
    else:
        print(f"{where} not seen within 3 s in {len(gaps)} rounds")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
