"""What each residency tier costs to come back from, for one model, side by side in one run:
a cold load (the first in this process), warm loads (files in the page cache), and restores
from the host-RAM tier (pinned host memory → device). Prints restore ÷ warm load and the
restore bandwidth.

    .venv/bin/python bench/tiers.py [--device cuda:0] [--embd 2048] [--rounds 5]

Then the same through the manager (`--manager`, on by default): two tasks of this model on one
device, a budget with room for one, so that each load evicts the other: with the host-RAM tier
on, each load after the first two restores a parked model (`ModelRestored`'s duration); with it
off (``host_cache_gb: 0``), each is a warm load again (`ModelLoaded`'s).

Goals on a GPU: restore at least 10× faster than a warm load, at ≥ 40 GB/s on an H200-class
machine (its pinned host-to-device limit measured 55 GB/s). On the CPU, parking means nothing
(the device is the host), so only the load figures are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's vramdeck, not an installed one

from vramdeck.manager import parking  # noqa: E402


def make_model(folder: Path, n_embd: int) -> int:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=12, n_embd=n_embd, n_head=16, vocab_size=16000, n_positions=512)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def load(folder: Path, device: str):  # type: ignore[no-untyped-def]
    import torch
    from transformers import GPT2LMHeadModel

    started = time.perf_counter()
    kwargs = {"device_map": device} if device.startswith("cuda") else {}
    model = GPT2LMHeadModel.from_pretrained(folder, dtype="auto", use_safetensors=True, **kwargs)
    model.eval()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return model, time.perf_counter() - started


def cold_load(folder: Path, device: str) -> float:
    """A first load in a new process (imports and first-use work included), after dropping the
    page cache where this user may (root on Linux); otherwise the files may still be cached."""
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    code = (
        "import sys, time; sys.path[:0] = [sys.argv[3]]; started = time.perf_counter();"
        "from tiers import load; load(sys.argv[1], sys.argv[2]);"
        "print(time.perf_counter() - started)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder), device, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


def drop(model) -> None:  # type: ignore[no-untyped-def]
    import torch

    model.to("meta")
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def through_manager(folder: Path, device: str, size: int, rounds: int, tier_gb: float) -> float:
    """Median seconds of a task's model coming back, through the manager, alternating two tasks
    that do not fit together (`tier_gb` 0: the tier is off, each comes back by a load)."""
    import asyncio

    import yaml

    from vramdeck.manager import Ledger, ModelLoaded, ModelManager, ModelRestored
    from vramdeck.manager.loaders import TransformersLoader

    option = {"model_id": str(folder), "framework": "transformers", "device": device,
              "vram_gb": size / 1024**3}  # fmt: skip
    config = {
        "inference": {"memory_budget_gb": 1.5 * size / 1024**3, "host_cache_gb": tier_gb},
        "models": {t: {"options": {"m": dict(option)}} for t in ("a", "b")},
    }
    path = folder.parent / f"models-{tier_gb:g}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    async def run() -> list[float]:
        m = ModelManager(path, loaders=[TransformersLoader()], ledger=Ledger(None))
        back: list[float] = []

        def on_event(e: object) -> None:
            restored = isinstance(e, ModelRestored)
            if restored or (isinstance(e, ModelLoaded) and not tier_gb):
                back.append(e.duration_s)  # type: ignore[attr-defined]

        m.events.subscribe(on_event)
        try:
            await m.load_model("a")
            await m.load_model("b")
            back.clear()  # the first two loads are not comebacks
            for _ in range(rounds):
                await m.load_model("a")
                await m.load_model("b")
        finally:
            await m.shutdown()
        return back

    return statistics.median(asyncio.run(run()))


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--embd", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-manager", dest="manager", action="store_false")
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu:
        print("card:", torch.cuda.get_device_name(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        size = make_model(folder, args.embd)
        print(f"model: GPT-2, {size / 1024**3:.2f} GiB of weights, on {args.device}")
        cold = cold_load(folder, args.device)
        warm, restores = [], []
        for _ in range(args.rounds):  # interleaved, so drift hits both alike
            model, seconds = load(folder, args.device)
            warm.append(seconds)
            if on_gpu:
                parking.park(model, pin=True)
                torch.cuda.empty_cache()
                started = time.perf_counter()
                parking.restore(model, args.device)
                restores.append(time.perf_counter() - started)
            drop(model)
        if args.manager:
            tier_gb = 2 * size / 1024**3 if on_gpu else 0
            managed_warm = through_manager(folder, args.device, size, args.rounds, 0)
            managed_back = through_manager(folder, args.device, size, args.rounds, tier_gb)
    warm_s = statistics.median(warm)
    print(f"cold load     {cold:8.3f} s  (a new process: imports and first use included)")
    print(f"warm load     {warm_s:8.3f} s  (median of {len(warm)})")
    if not restores:
        print("restore       needs a GPU: on the CPU the model's device is host RAM already, so")
        print("              the host-RAM tier is off and there is nothing to restore")
        print(f"ratio warm/cold: {warm_s / cold:.2f}")
        if args.manager:
            print(f"through the manager: warm load {managed_warm:.3f} s (each evicts the other;")
            print("  the tier is off on the CPU, so a comeback is a load: restore needs a GPU)")
        return
    restore_s = statistics.median(restores)
    print(f"restore (RAM) {restore_s:8.3f} s  (median of {len(restores)})")
    print(f"restore ÷ warm load: {restore_s / warm_s:.3f}  ({warm_s / restore_s:.1f}× faster)")
    print(f"restore bandwidth: {size / restore_s / 1e9:.1f} GB/s")
    if args.manager:
        print(f"through the manager: warm load {managed_warm:.3f} s, restore {managed_back:.3f} s")
        print(
            f"  restore ÷ warm load: {managed_back / managed_warm:.3f}  "
            f"({managed_warm / managed_back:.1f}× faster; evictions, room and checks included)"
        )


if __name__ == "__main__":
    main()
