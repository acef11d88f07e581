"""What each residency tier costs to come back from, for one model, side by side in one run:
a cold load (the first in this process), warm loads (files in the page cache), and restores
from the host-RAM tier (pinned host memory → device). Prints restore ÷ warm load and the
restore bandwidth.

    .venv/bin/python bench/tiers.py [--device cuda:0] [--embd 2048] [--rounds 5]

Goals on a GPU: restore at least 10× faster than a warm load, at ≥ 40 GB/s on an H200-class
machine (its pinned host-to-device limit measured 55 GB/s). On the CPU, parking means nothing
(the device is the host), so only the load figures are printed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from vramdeck.manager import parking


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


def drop(model) -> None:  # type: ignore[no-untyped-def]
    import torch

    model.to("meta")
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--embd", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu:
        print("card:", torch.cuda.get_device_name(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        size = make_model(folder, args.embd)
        print(f"model: GPT-2, {size / 1024**3:.2f} GiB of weights, on {args.device}")
        model, cold = load(folder, args.device)
        drop(model)
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
    warm_s = statistics.median(warm)
    print(f"cold load     {cold:8.3f} s")
    print(f"warm load     {warm_s:8.3f} s  (median of {len(warm)})")
    if not restores:
        print("restore       needs a GPU: on the CPU the model's device is host RAM already, so")
        print("              the host-RAM tier is off and there is nothing to restore")
        print(f"ratio warm/cold: {warm_s / cold:.2f}")
        return
    restore_s = statistics.median(restores)
    print(f"restore (RAM) {restore_s:8.3f} s  (median of {len(restores)})")
    print(f"restore ÷ warm load: {restore_s / warm_s:.3f}  ({warm_s / restore_s:.1f}× faster)")
    print(f"restore bandwidth: {size / restore_s / 1e9:.1f} GB/s")


if __name__ == "__main__":
    main()
