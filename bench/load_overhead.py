"""How much the manager adds to a plain ``from_pretrained``: both load the same model,
alternately, several rounds in one run; the ratio (manager / plain) is printed last.

    .venv/bin/python bench/load_overhead.py [--rounds 15] [--device cpu|cuda:0] [--embd 1024]

Goal: at most 1.03. Absolute times mean something only on the GPU machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path


def make_model(folder: Path, n_embd: int) -> int:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=6, n_embd=n_embd, n_head=8, vocab_size=8000, n_positions=256)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def plain_load(folder: Path, device: str) -> float:
    import torch
    from transformers import GPT2LMHeadModel

    started = time.perf_counter()
    kwargs = {"device_map": device} if device.startswith("cuda") else {}
    model = GPT2LMHeadModel.from_pretrained(folder, dtype="auto", use_safetensors=True, **kwargs)
    model.eval()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    model.to("meta")
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return elapsed


async def manager_load(manager, device: str) -> float:
    import torch

    started = time.perf_counter()
    await manager.load_model("bench")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    await manager.unload_model("bench")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--embd", type=int, default=1024)
    args = parser.parse_args()

    from vramdeck.manager import Ledger, ModelManager

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gpt2"
        nbytes = make_model(folder, args.embd)
        config = Path(tmp) / "models.yaml"
        config.write_text(
            f"models:\n  bench:\n    options:\n      m: {{model_id: '{folder}', "
            f"vram_gb: {nbytes / 2**30:.3f}, device: '{args.device}'}}\n"
        )
        manager = ModelManager(config, ledger=Ledger(Path(tmp) / "ledger.json"))
        plain_load(folder, args.device)  # warm the page cache and imports for both
        await manager_load(manager, args.device)
        plain_times, manager_times = [], []
        for _ in range(args.rounds):
            plain_times.append(plain_load(folder, args.device))
            manager_times.append(await manager_load(manager, args.device))
        await manager.shutdown()

    plain, managed = statistics.median(plain_times), statistics.median(manager_times)
    mib = nbytes / 2**20
    print(f"model: GPT-2, {mib:.0f} MiB of weights, device {args.device}, {args.rounds} rounds")
    for label, times in (
        ("plain from_pretrained", plain_times),
        ("manager.load_model", manager_times),
    ):
        median_ms, min_ms = statistics.median(times) * 1000, min(times) * 1000
        print(f"{label:<24}median {median_ms:8.1f} ms  (min {min_ms:.1f})")
    print(f"ratio of minimums manager / plain: {min(manager_times) / min(plain_times):.3f}")
    print(f"ratio manager / plain (medians): {managed / plain:.3f}  (goal ≤ 1.03)")


if __name__ == "__main__":
    asyncio.run(main())
