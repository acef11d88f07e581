"""A warm `from_pretrained` with torch.nn.init skipping meta tensors (manager/loaders/meta_init.py)
against without, side by side in one run, rounds interleaved; printed as ratios.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/meta_init.py [--rounds 10]

The models are the demo's (made once in a temporary folder). Building a model on the meta device
runs every module's initialiser through torch's Python reference kernels, holding the GIL: the
skip makes the load faster and leaves the panel's thread less to queue behind.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vramdeck.manager.demo_models import SPECS, ensure_demo_models  # noqa: E402
from vramdeck.manager.loaders import meta_init  # noqa: E402


def set_skipping(on: bool) -> None:
    """Install the wrappers, or put torch's own initialisers back (for the baseline rounds)."""
    from torch.nn import init

    meta_init.install()
    for name in dir(init):
        fn = getattr(init, name)
        if getattr(fn, "vramdeck_skips_meta", False) and not on:
            setattr(init, name, fn.__wrapped__)
            setattr(init, f"_bench_wrapped_{name}", fn)
        elif on and hasattr(init, f"_bench_wrapped_{name}"):
            setattr(init, name, getattr(init, f"_bench_wrapped_{name}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    auto = {"gpt2": AutoModelForCausalLM, "bert": AutoModelForSequenceClassification}

    torch.set_num_threads(1)  # the loader's thread, as in the panel; less noise on 2 cores
    with tempfile.TemporaryDirectory(prefix="vramdeck-bench-") as tmp:
        folder = ensure_demo_models(Path(tmp) / "demo-models")
        print(f"{'model':12} {'without':>10} {'with skip':>10} {'ratio':>7}")
        for name, (arch, _spec) in SPECS.items():
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds + 1):  # the first round of each warms up, not counted
                for on in (False, True):
                    set_skipping(on)
                    started = time.perf_counter()
                    auto[arch].from_pretrained(folder / name)
                    times[on].append(time.perf_counter() - started)
            without, skip = (statistics.median(times[k][1:]) for k in (False, True))
            print(f"{name:12} {1000 * without:8.1f} ms {1000 * skip:7.1f} ms {skip / without:7.2f}")


if __name__ == "__main__":
    main()
