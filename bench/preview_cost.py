"""What a preview costs on a 50-task config, goal under 1 ms (so hovering Load never lags).

    .venv/bin/python bench/preview_cost.py [--tasks 50] [--rounds 2000] [--against REV] [--parks]

The manager runs over the fake probe and loader of the tests (2 GPUs of 16 GiB, 3 options a task,
1 to 4 GiB each), with a third of the tasks loaded so that previews have victims to choose. Each
line is the median of `--rounds` calls, and its ratio to the 1 ms goal (< 1 meets it); the
device reads are the fake probe's, so on a GPU machine add NVML's read time per device.

With ``--against REV`` (a git revision of this repository, e.g. ``HEAD~3``), REV's manager runs
beside this tree's in the same process, on the same config and state, its calls interleaved
with this tree's one by one, so that both see the same load on the machine: each line gives
both medians and their ratio (after / before; < 1 is faster). The two must preview the same
evictions, or the bench stops and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.fakes  # noqa: E402
import vramdeck.manager  # noqa: E402

GOAL_S = 0.001
#: REV's manager is imported under this name, beside this tree's `vramdeck.manager`.
BEFORE = "vramdeck_before"


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


def interleaved_medians(
    before: Callable[[], object], after: Callable[[], object], rounds: int
) -> tuple[float, float]:
    """Medians of `rounds` calls of each, alternated call by call."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, into in ((before, times[0]), (after, times[1])):
            started = time.perf_counter()
            fn()
            into.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def import_revision(rev: str, folder: Path) -> tuple[ModuleType, ModuleType]:
    """REV's `manager/` and `tests/fakes.py`, imported as `vramdeck_before.manager` and
    `vramdeck_before.fakes` (their absolute imports renamed to match)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "manager", "tests/fakes.py"],
        capture_output=True,
        check=False,
    )
    if archive.returncode:
        sys.exit(f"--against {rev}: git archive failed: {archive.stderr.decode().strip()}")
    package = folder / BEFORE
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(package, filter="data")
    (package / "fakes.py").write_bytes((package / "tests" / "fakes.py").read_bytes())
    (package / "__init__.py").write_text("", encoding="utf-8")
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        renamed = text.replace("vramdeck.manager", f"{BEFORE}.manager")
        if renamed != text:
            source.write_text(renamed, encoding="utf-8")
    sys.path.insert(0, str(folder))
    return importlib.import_module(f"{BEFORE}.manager"), importlib.import_module(f"{BEFORE}.fakes")


async def manager_over(
    manager: Any, fakes: Any, path: Path, tasks: int, *, parks: bool = False
) -> Any:
    """A manager of module `manager` over the fakes of `fakes`, a third of its tasks loaded;
    with `parks`, evicted models park in host RAM, as transformers models on a GPU do."""
    probe = fakes.FakeProbe({"cuda:0": 16.0, "cuda:1": 16.0, "cpu": 128.0})
    loaders = [(fakes.ParkingFakeLoader if parks else fakes.FakeLoader)(probe)]
    m = manager.ModelManager(path, probe=probe, loaders=loaders, ledger=manager.Ledger(None))
    for name in list(m.tasks)[: tasks // 3]:
        await m.load_model(name)
    return m


def calls(m: Any) -> list[tuple[str, Callable[[], object], int]]:
    """(line, call, how many rounds of it per `--rounds`) for one manager."""
    names = list(m.tasks)
    loaded, unloaded = next(iter(m.loaded_models)), names[-1]
    return [
        ("preview_load (not loaded)", lambda: m.preview_load(unloaded), 1),
        ("preview_switch (loaded)", lambda: m.preview_switch(loaded, "o2"), 1),
        (f"preview_warmup (all {len(names)})", m.preview_warmup, 10),
        ("validate_memory_budget", m.validate_memory_budget, 1),
    ]


def same_previews(before: Any, after: Any) -> None:
    def seen(m: Any) -> list[object]:
        previews = [m.preview_load(list(m.tasks)[-1]), m.preview_warmup()]
        return [([(e.task, e.device, e.bytes) for e in p.evictions], p.fits) for p in previews]

    if seen(before) != seen(after):
        sys.exit(f"the two trees preview different evictions:\n{seen(before)}\n{seen(after)}")


async def measure(tasks: int, rounds: int, parks: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "models.yaml"
        path.write_text(config(tasks), encoding="utf-8")
        m = await manager_over(vramdeck.manager, tests.fakes, path, tasks, parks=parks)
        preview = m.preview_load(list(m.tasks)[-1])
        print(f"{len(m.loaded_models)} of {tasks} tasks loaded; a load preview: {preview.summary}")
        print(f"| call ({tasks} tasks) | median | ratio to the 1 ms goal |")
        print("| --- | --- | --- |")
        for name, fn, per in calls(m):
            seconds = median_s(fn, max(1, rounds // per))
            print(f"| {name} | {seconds * 1e6:.0f} µs | {seconds / GOAL_S:.2f} |")
        await m.shutdown()


async def measure_against(rev: str, tasks: int, rounds: int, parks: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        manager_before, fakes_before = import_revision(rev, Path(folder))
        path = Path(folder) / "models.yaml"
        path.write_text(config(tasks), encoding="utf-8")
        before = await manager_over(manager_before, fakes_before, path, tasks, parks=parks)
        after = await manager_over(vramdeck.manager, tests.fakes, path, tasks, parks=parks)
        same_previews(before, after)
        print(f"{len(after.loaded_models)} of {tasks} tasks loaded in each; before: {rev}")
        print(f"| call ({tasks} tasks) | before | after | after / before | after, ratio to 1 ms |")
        print("| --- | --- | --- | --- | --- |")
        pairs = zip(calls(before), calls(after), strict=True)
        for (name, fn_before, per), (_, fn_after, _) in pairs:
            was, now = interleaved_medians(fn_before, fn_after, max(1, rounds // per))
            print(f"| {name} | {was * 1e6:.0f} µs | {now * 1e6:.0f} µs | {now / was:.2f} | "
                  f"{now / GOAL_S:.2f} |")  # fmt: skip
        await before.shutdown()
        await after.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with")
    parser.add_argument(
        "--parks", action="store_true", help="evicted models park in host RAM (the tiers' case)"
    )
    args = parser.parse_args()
    if args.against:
        asyncio.run(measure_against(args.against, args.tasks, args.rounds, args.parks))
    else:
        asyncio.run(measure(args.tasks, args.rounds, args.parks))


if __name__ == "__main__":
    main()
