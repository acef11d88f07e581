"""What the endpoint adds over calling the model in-process, measured side by side in one run.

    .venv/bin/python bench/serve_overhead.py [--rounds 15] [--device cpu|cuda:0]

Prints, as ratios (endpoint / in-process, medians of alternating rounds):
- a short request's latency through the endpoint (the real openai client in another process,
  as a pipeline calls it; timed there) vs. the same
  ``generate`` called in-process (goal ≤ 1.10); and a request whose generation takes over
  100 ms (goal ≤ 1.03);
- streamed tokens per second through the endpoint vs. in-process with the same streamer
  (goal ≥ 0.97);
- the serving loop's stall p99 while four client processes stream (goal < 16 ms), beside the
  same loop's p99 when idle.

The models are random-weight GPT-2s made here with a tokenizer trained here (their vocabulary
has no end-of-sequence token, so every request generates exactly max_tokens tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "The camera saw"
SENTENCES = [
    "The camera saw a red car turn left at the corner.",
    "A person walks a dog along the river in the morning.",
    "Two trucks stopped at the gate while the guard checked them.",
    "Frames arrive at thirty per second from the front door.",
]


def make_model(folder: Path, n_embd: int, n_layer: int) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(SENTENCES, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>")
    # eos 50256 lies outside the 400-token vocabulary: generation never stops early.
    config = GPT2Config(
        n_layer=n_layer, n_embd=n_embd, n_head=4, vocab_size=len(fast), n_positions=512
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def write_config(folder: Path, device: str) -> Path:
    short = make_model(folder / "short", 64, 2)
    long = make_model(folder / "long", 384, 6)
    path = folder / "models.yaml"
    path.write_text(
        "models:\n"
        f"  short: {{options: {{m: {{model_id: '{short}', device: {device}, vram_gb: 0.01}}}}}}\n"
        f"  long: {{options: {{m: {{model_id: '{long}', device: {device}, vram_gb: 0.2}}}}}}\n"
        "inference:\n  serving: {max_tokens: 400}\n"
    )
    return path


def median_ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    ma, mb = statistics.median(a), statistics.median(b)
    return ma, mb, ma / mb


class Client:
    """A pipeline in another process: the real openai client, driven over its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str) -> Client:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", url,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    async def ask(self, task: str, tokens: int, stream: bool) -> tuple[float, int]:
        """(seconds, completion tokens) of one request, timed in the client."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{task} {tokens} {int(stream)}\n".encode())
        await self.process.stdin.drain()
        elapsed, count = (await self.process.stdout.readline()).split()
        return float(elapsed), int(count)

    async def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await self.process.wait()


def client_main(url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    for line in sys.stdin:
        task, tokens, stream = line.split()
        started = time.perf_counter()
        ask = {"model": task, "prompt": PROMPT, "max_tokens": int(tokens), "temperature": 0}
        if stream == "1":
            count = 0
            for chunk in client.completions.create(
                **ask, stream=True, stream_options={"include_usage": True}
            ):
                if chunk.usage is not None:
                    count = chunk.usage.completion_tokens
        else:
            count = client.completions.create(**ask).usage.completion_tokens
        print(f"{time.perf_counter() - started} {count}", flush=True)


async def in_process(endpoint: Any, task: str, tokens: int, stream: bool) -> tuple[float, int]:
    """The same generation called in this process (the streamer collects the pieces)."""
    from vramdeck.manager.inference import GenerationRequest, generate_text

    model = endpoint.manager.loaded_models[task]
    tokenizer = endpoint.inference._tokenizers[model]
    request = GenerationRequest(prompt=PROMPT, max_tokens=tokens, temperature=0)
    pieces: list[str] = []
    started = time.perf_counter()
    result = await asyncio.to_thread(
        generate_text, model, tokenizer, request, on_text=pieces.append if stream else None
    )
    return time.perf_counter() - started, result.completion_tokens


async def pair(
    endpoint: Any, client: Client, task: str, tokens: int, rounds: int, *, stream: bool = False
) -> tuple[float, float, float]:
    """Alternating rounds; medians of seconds, or of tokens per second for streams."""
    served, direct = [], []
    for _ in range(rounds):
        for results, call in (
            (served, client.ask(task, tokens, stream)),
            (direct, in_process(endpoint, task, tokens, stream)),
        ):
            elapsed, count = await call
            results.append(count / elapsed if stream else elapsed)
    return median_ratio(served, direct)


async def loop_stalls(duration_s: float | None, stop: threading.Event | None = None) -> list[float]:
    """Lateness of a 5 ms timer on this loop, for `duration_s` or until `stop` is set."""
    stalls = []
    ends = time.perf_counter() + (duration_s or 1e9)
    while time.perf_counter() < ends and not (stop and stop.is_set()):
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        stalls.append(time.perf_counter() - started - 0.005)
    return stalls


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else float("nan")


async def stalls_under_clients(url: str, clients: int, requests: int, tokens: int) -> list[float]:
    code = (
        "import sys, openai\n"
        "c = openai.OpenAI(base_url=sys.argv[1], api_key='x', max_retries=0)\n"
        "for _ in range(int(sys.argv[2])):\n"
        "    for _ in c.completions.create(model='long', prompt='Hi', max_tokens=int(sys.argv[3]),"
        " stream=True):\n        pass\n"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, url, str(requests), str(tokens)
        )
        for _ in range(clients)
    ]
    done = threading.Event()
    measuring = asyncio.ensure_future(loop_stalls(None, done))
    codes = [await p.wait() for p in procs]
    done.set()
    stalls = await measuring
    assert codes == [0] * clients, f"a client failed: {codes}"
    return stalls


async def main(rounds: int, device: str) -> None:
    sys.setswitchinterval(0.001)  # as the panel sets it (gui/gc_guard.py)
    from vramdeck.manager import Ledger, ModelManager
    from vramdeck.serving import Endpoint, ServeSettings

    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), device)
        manager = ModelManager(config, ledger=Ledger(None))
        endpoint = Endpoint(manager, ServeSettings.from_config(manager.inference_config, port=0))
        url = await endpoint.start()
        client = await Client.start(url)
        try:
            for task in ("short", "long"):  # warm: loaded, tokenizer read, first run done
                await endpoint.inference.warm_up(task)
                await client.ask(task, 2, False)
            short = await pair(endpoint, client, "short", 8, rounds)
            long = await pair(endpoint, client, "long", 64, rounds)
            streamed = await pair(endpoint, client, "long", 128, rounds, stream=True)
            idle = await loop_stalls(2.0)
            busy = await stalls_under_clients(url, 4, 3, 128)
        finally:
            await client.close()
            await endpoint.stop()
            await manager.shutdown()
    print(f"device {device}, {rounds} alternating rounds, medians")
    row("measure", "endpoint", "in-process", "ratio", "goal")
    row("short request (8 tokens), s", *fmt(short, 4), "≤ 1.10")
    row("long request (64 tokens), s", *fmt(long, 4), f"≤ 1.03 (in-process {long[1]:.3f} s)")
    row("streamed tokens per second (128 tokens)", *fmt(streamed, 1), "≥ 0.97")
    busy_ms, idle_ms = p99(busy) * 1000, p99(idle) * 1000
    row("loop stall p99, 4 clients streaming, ms", f"{busy_ms:.2f}", "", "",
        f"< 16 (idle p99 {idle_ms:.2f} ms, busy max {max(busy) * 1000:.1f} ms)")  # fmt: skip


def fmt(pair: tuple[float, float, float], digits: int) -> tuple[str, str, str]:
    return f"{pair[0]:.{digits}f}", f"{pair[1]:.{digits}f}", f"{pair[2]:.3f}"


def row(name: str, served: str, direct: str, ratio: str, goal: str) -> None:
    print(f"{name:<42}{served:>10}{direct:>12}{ratio:>8}  {goal}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client)
    else:
        asyncio.run(main(args.rounds, args.device))
