"""How smooth is load progress? One real GPT-2 load, every progress report timed.

Saves a GPT-2 (default: 12 layers, 768 wide, the real vocabulary: ≈475 MiB float32) in shards,
loads it with the TransformersLoader, and prints how many reports carried a fraction, how many
pass the manager's rate limit, and the largest gap between two fractions as a share of the load
while the weights are read (the biggest tensor is read in one go: GPT-2's embedding). Run several
rounds; the first reads from disk, the others from the page cache. On the CPU the weights stay
memory-mapped (the load is quick); on a GPU every byte is copied to the device.

    .venv/bin/python bench/load_progress.py [--embd 768] [--layers 12] [--device cpu]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.load_progress import LoadRun, ProgressReports
from vramdeck.manager.loaders import LoadContext, TransformersLoader
from vramdeck.manager.memory import HostProbe


def save(path: Path, embd: int, layers: int) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=layers, n_embd=embd, n_head=max(1, embd // 64))
    GPT2LMHeadModel(config).save_pretrained(path, max_shard_size="100MB")


def one_load(path: Path, device: str) -> tuple[float, list[tuple[float, float]], int]:
    times: list[tuple[float, float]] = []
    passed: list[float | None] = []
    gate = ProgressReports(LoadRun("bench"), lambda f, s: passed.append(f), blocking=True)

    def progress(fraction: float | None, stage: str) -> None:
        if stage.startswith("reading weights"):  # from its first report (no fraction yet)
            times.append((time.perf_counter(), -1.0 if fraction is None else fraction))
        gate(fraction, stage)

    ctx = LoadContext(task="bench", device=device, probe=HostProbe(), progress=progress)
    option = ModelConfig({"model_id": str(path), "vram_gb": 1.0, "device": device}, name="b")
    loader = TransformersLoader()
    model = loader.load(option, ctx)
    reading_s = time.perf_counter() - times[0][0]
    loader.unload(model, device)
    return reading_s, [(t - times[0][0], f) for t, f in times[1:]], len(passed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embd", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gpt2"
        save(path, args.embd, args.layers)
        size = sum(f.stat().st_size for f in path.glob("*.safetensors")) / 2**20
        shards = len(list(path.glob("*.safetensors")))
        where = f"{shards} shards on {args.device}"
        print(f"GPT-2 {args.layers}x{args.embd}: {size:.0f} MiB in {where}")
        for round_ in range(args.rounds):
            elapsed, reports, passed = one_load(path, args.device)  # from reading on
            moments = [t for t, _ in reports]
            gap = max(b - a for a, b in itertools.pairwise(moments))
            print(
                f"round {round_ + 1}: {elapsed:.2f} s from 'reading weights' to loaded; "
                f"{len(reports)} fractions ({len(reports) / elapsed:.0f}/s), {passed} reports past "
                f"the rate limit ({passed / elapsed:.1f}/s); shares of that time: before the first "
                f"fraction {moments[0] / elapsed:.0%}, largest gap between fractions "
                f"{gap / elapsed:.0%}, after the last {(elapsed - moments[-1]) / elapsed:.0%}; "
                f"last fraction {reports[-1][1]}"
            )


if __name__ == "__main__":
    main()
