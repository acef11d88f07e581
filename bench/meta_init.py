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


def initialisers() -> tuple[dict[str, object], dict[str, object]]:
    """torch.nn.init's public initialisers as torch has them, and as `meta_init` wraps them."""
    from torch.nn import init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_")]
    meta_init.install()
    wrapped = {n: getattr(init, n) for n in names}
    own = {n: getattr(fn, "__wrapped__", fn) for n, fn in wrapped.items()}
    return own, wrapped


def use(functions: dict[str, object]) -> None:
    from torch.nn import init

    for name, fn in functions.items():
        setattr(init, name, fn)


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
    own, wrapped = initialisers()
    with tempfile.TemporaryDirectory(prefix="vramdeck-bench-") as tmp:
        folder = ensure_demo_models(Path(tmp) / "demo-models")
        print(f"{'model':12} {'without':>10} {'with skip':>10} {'ratio':>7}")
        for name, (arch, _spec) in SPECS.items():
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds + 1):  # the first round of each warms up, not counted
                for on in (False, True):
                    use(wrapped if on else own)
                    started = time.perf_counter()
                    auto[arch].from_pretrained(folder / name)
                    times[on].append(time.perf_counter() - started)
            without, skip = (statistics.median(times[k][1:]) for k in (False, True))
            print(f"{name:12} {1000 * without:8.1f} ms {1000 * skip:7.1f} ms {skip / without:7.2f}")


if __name__ == "__main__":
    main()
