"""A server's sleep + wake against its stop + start, side by side in one run, as a ratio.

Both paths run the fake server (tests/manager/fake_server.py) through the server loader, in
alternate rounds:

- sleep: ``ServerLoader.suspend`` (the sleep call, then the probe watching the memory come back)
  and ``ServerLoader.resume`` (the wake call, until the server answers as awake);
- stop: ``ServerLoader.unload`` (SIGTERM, the group gone) and ``ServerLoader.load`` (a new
  process, until ``/health`` answers 200).

The fake "loads weights" for ``--start-delay`` seconds (1 s by default, as in
bench/server_lifecycle.py; real servers take tens of seconds) before it listens;
``--start-delay 0`` leaves a bare Python start and the allocation of ``--hold-mb``, the least
any server costs. Both paths pay the allocation: a wake takes the memory again. Medians are
printed, then sleep+wake ÷ stop+start.

    .venv/bin/python bench/server_sleep.py [--rounds 10] [--hold-mb 500] [--start-delay 1]
    python bench/server_sleep.py --device cuda:0 --cuda-mb 4096   # on a GPU machine
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vramdeck.manager.config import ModelConfig  # noqa: E402
from vramdeck.manager.loaders import LoadContext, ServerHandle, VllmLoader  # noqa: E402
from vramdeck.manager.memory import SystemProbe  # noqa: E402

FAKE = ROOT / "tests" / "manager" / "fake_server.py"


def option(args: argparse.Namespace) -> ModelConfig:
    flags = ["--hold-mb", str(args.hold_mb), "--start-delay", str(args.start_delay)]
    flags += ["--cuda-mb", str(args.cuda_mb)] if args.cuda_mb else []
    command = [sys.executable, str(FAKE), "--host", "{host}", "--port", "{port}", *flags]
    fields = {
        "model_id": "fake-model",
        "framework": "vllm",
        "vram_gb": (args.hold_mb + args.cuda_mb + 100) / 1024,
        "device": args.device,
        "server_command": command,
        "sleep_level": 1,
        "stop_timeout_s": 10,
    }
    return ModelConfig(fields, name="bench")


async def sleep_round(loader: VllmLoader, handle: ServerHandle, ctx: LoadContext) -> tuple:
    began = time.perf_counter()
    report = await loader.suspend(handle, ctx)
    slept = time.perf_counter() - began
    if not report.slept:
        raise RuntimeError(f"the fake did not sleep: {report.reason}")
    began = time.perf_counter()
    await loader.resume(handle, ctx)
    return slept, time.perf_counter() - began, report.freed_bytes


async def stop_round(
    loader: VllmLoader, handle: ServerHandle, opt: ModelConfig, ctx: LoadContext
) -> tuple[float, float, ServerHandle]:
    began = time.perf_counter()
    await loader.unload(handle, ctx.device)
    stopped = time.perf_counter() - began
    began = time.perf_counter()
    handle = await loader.load(opt, ctx)
    return stopped, time.perf_counter() - began, handle


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:8.1f} ms  (min {min(values) * 1000:.1f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hold-mb", type=float, default=500)
    parser.add_argument("--cuda-mb", type=float, default=0)
    parser.add_argument("--start-delay", type=float, default=1.0)
    args = parser.parse_args()

    probe = SystemProbe.detect()
    total = probe.read(args.device).total or psutil.virtual_memory().total
    ctx = LoadContext(task="bench", device=args.device, probe=probe, device_total_bytes=total)
    loader, opt = VllmLoader(), option(args)
    handle = await loader.load(opt, ctx)
    times: dict[str, list[float]] = {"sleep": [], "wake": [], "stop": [], "start": []}
    freed: list[int] = []
    try:
        await sleep_round(loader, handle, ctx)  # warm-up: aiohttp's import, the first readings
        for _ in range(args.rounds):
            slept, woke, nbytes = await sleep_round(loader, handle, ctx)
            stopped, started, handle = await stop_round(loader, handle, opt, ctx)
            times["sleep"].append(slept)
            times["wake"].append(woke)
            times["stop"].append(stopped)
            times["start"].append(started)
            freed.append(nbytes)
    finally:
        await loader.unload(handle, ctx.device)

    print(f"fake server holding {args.hold_mb:g} MB host" + (f" + {args.cuda_mb:g} MB {args.device}"
          if args.cuda_mb else "") + f", start delay {args.start_delay:g} s, "
          f"{args.rounds} rounds, probe {probe.name}")  # fmt: skip
    for name, values in times.items():
        print(f"  {name:6s} {ms(values)}")
    print(f"  the sleep freed a median {statistics.median(freed) / 2**20:.0f} MiB (probe)")
    sleep_wake = [s + w for s, w in zip(times["sleep"], times["wake"], strict=True)]
    stop_start = [s + t for s, t in zip(times["stop"], times["start"], strict=True)]
    ratio = statistics.median(sleep_wake) / statistics.median(stop_start)
    print(f"sleep + wake {ms(sleep_wake)}")
    print(f"stop + start {ms(stop_start)}")
    wake_start = statistics.median(times["wake"]) / statistics.median(times["start"])
    print(f"ratio sleep+wake / stop+start: {ratio:.3f}  (wake / start: {wake_start:.3f})")


if __name__ == "__main__":
    asyncio.run(main())
