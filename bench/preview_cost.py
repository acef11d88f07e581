"""What a preview costs on a 50-task config, goal under 1 ms (so hovering Load never lags).

    .venv/bin/python bench/preview_cost.py [--tasks 50] [--rounds 2000]

The manager runs over the fake probe and loader of the tests (2 GPUs of 16 GiB, 3 options a task,
1 to 4 GiB each), with a third of the tasks loaded so that previews have victims to choose. Each
line is the median of `--rounds` calls, and its ratio to the 1 ms goal (< 1 meets it); the
device reads are the fake probe's, so on a GPU machine add NVML's read time per device.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes import FakeLoader, FakeProbe  # noqa: E402
from vramdeck.manager import Ledger, ModelManager  # noqa: E402

GOAL_S = 0.001


def config(tasks: int) -> str:
    lines = ["models:"]
    for i in range(tasks):
        lines.append(f"  task{i:02d}:")
        lines.append(f"    priority: {1 + i % 3}")
        lines.append("    options:")
        for j, gb in enumerate((1 + i % 4, 1 + (i + 1) % 4, 1)):
            lines.append(f"      o{j}: {{model_id: m{i}-{j}, vram_gb: {gb}}}")
    lines.append("inference: {offload_threshold: 0.9}")
    return "\n".join(lines) + "\n"


def median_s(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def measure(tasks: int, rounds: int) -> list[tuple[str, float]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "models.yaml"
        path.write_text(config(tasks), encoding="utf-8")
        probe = FakeProbe({"cuda:0": 16.0, "cuda:1": 16.0, "cpu": 128.0})
        m = ModelManager(path, probe=probe, loaders=[FakeLoader(probe)], ledger=Ledger(None))
        names = list(m.tasks)
        for name in names[: tasks // 3]:
            await m.load_model(name)
        loaded = next(iter(m.loaded_models))
        unloaded = names[-1]
        preview = m.preview_load(unloaded)
        print(f"{len(m.loaded_models)} of {tasks} tasks loaded; a load preview: {preview.summary}")
        figures = [
            ("preview_load (not loaded)", median_s(lambda: m.preview_load(unloaded), rounds)),
            ("preview_switch (loaded)", median_s(lambda: m.preview_switch(loaded, "o2"), rounds)),
            ("preview_warmup (all 50)", median_s(m.preview_warmup, max(1, rounds // 10))),
            ("validate_memory_budget", median_s(m.validate_memory_budget, rounds)),
        ]
        await m.shutdown()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.tasks, args.rounds))
    print(f"| call ({args.tasks} tasks) | median | ratio to the 1 ms goal |")
    print("| --- | --- | --- |")
    for name, seconds in figures:
        print(f"| {name} | {seconds * 1e6:.0f} µs | {seconds / GOAL_S:.2f} |")


if __name__ == "__main__":
    main()
