"""Load progress you can trust: bytes of the safetensors shards read of their total, reported
per tensor by the real loader, rate-limited on the way to the loop, honest stages elsewhere."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.fakes import FakeProbe
from vramdeck.manager import Ledger, LoadCancelledError, LoadProgress, ModelManager
from vramdeck.manager.config import ModelConfig
from vramdeck.manager.load_progress import MIN_INTERVAL_S, LoadRun, ProgressReports
from vramdeck.manager.loaders import ExternalAPILoader, LoadContext, TransformersLoader
from vramdeck.manager.loaders.checkpoint_reading import reading_reported


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reports_are_rate_limited_but_stages_and_the_end_always_pass() -> None:
    sent: list[tuple[float | None, str]] = []
    clock = Clock()
    reports = ProgressReports(LoadRun("t"), lambda f, s: sent.append((f, s)), blocking=True,
                              clock=clock)  # fmt: skip
    reports(None, "reading weights")
    for i in range(1, 100):  # a hundred tensors within one interval
        reports(i / 200, "reading weights")
    assert sent == [(None, "reading weights"), (0.005, "reading weights")]  # the first fraction
    clock.now += 2 * MIN_INTERVAL_S
    reports(0.6, "reading weights")
    reports(0.7, "reading weights")
    reports(1.0, "reading weights")  # the end is never dropped
    reports(None, "moving to cpu")  # nor a new stage
    assert sent[2:] == [(0.6, "reading weights"), (1.0, "reading weights"), (None, "moving to cpu")]


def test_a_cancelled_blocking_load_stops_at_its_next_report() -> None:
    run = LoadRun("chat")
    blocking = ProgressReports(run, lambda f, s: None, blocking=True)
    on_loop = ProgressReports(run, lambda f, s: None, blocking=False)
    blocking(0.1, "reading")
    run.cancelled.set()
    on_loop(0.2, "reading")  # a server's output reader: its coroutine is cancelled instead
    with pytest.raises(LoadCancelledError, match="chat: the load was cancelled"):
        blocking(0.2, "reading")


@pytest.fixture(scope="module")
def sharded_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2 of ≈22 MB in 9 safetensors shards."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("models") / "gpt2-sharded"
    config = GPT2Config(n_layer=2, n_embd=384, n_head=2, vocab_size=5000, n_positions=64,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(path, max_shard_size="2MB")
    return path


def checkpoint_bytes(path: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in path.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (a safetensors file is not a dict)
                t = f.get_tensor(name)
                total += t.numel() * t.element_size()
    return total


def test_the_real_loader_reports_the_bytes_of_its_shards_as_it_reads(sharded_gpt2) -> None:
    seen: list[tuple[float | None, str]] = []
    ctx = LoadContext(task="t", device="cpu", probe=FakeProbe({"cpu": 1.0}),
                      progress=lambda f, s: seen.append((f, s)))  # fmt: skip
    option = ModelConfig({"model_id": str(sharded_gpt2), "vram_gb": 0.03}, name="gpt2")
    model = TransformersLoader().load(option, ctx)
    stage = "reading weights (GPT2LMHeadModel)"
    assert seen[:2] == [(None, "reading config"), (None, stage)]  # no fraction until bytes are read
    fractions = [f for f, s in seen if s == stage and f is not None]
    tensors = len(model.state_dict())  # the tied lm_head is stored once, read once
    assert len(fractions) >= tensors - 1 > 20  # one report per tensor read
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    total = checkpoint_bytes(sharded_gpt2)
    assert any(abs(f * total - round(f * total)) < 1e-6 * total for f in fractions)
    assert seen[-3:] == [(1.0, f"read {total / 2**20:.1f} MiB of weights"),
                         (None, "moving to cpu"), (1.0, "ready")]  # fmt: skip


def test_reading_is_counted_only_in_the_loading_thread(sharded_gpt2) -> None:
    from transformers import GPT2LMHeadModel

    counted: list[int] = []
    other: list[object] = []
    with reading_reported(lambda done, total: counted.append(done)):
        worker = threading.Thread(
            target=lambda: other.append(GPT2LMHeadModel.from_pretrained(sharded_gpt2))
        )
        worker.start()
        worker.join(60)
        assert other and counted == []  # another thread's load is not this one's
        GPT2LMHeadModel.from_pretrained(sharded_gpt2)
    assert counted and counted[-1] == checkpoint_bytes(sharded_gpt2)
    GPT2LMHeadModel.from_pretrained(sharded_gpt2)  # outside the block: nothing counted
    assert counted[-1] == checkpoint_bytes(sharded_gpt2)


async def test_the_manager_passes_real_fractions_on(write_config, sharded_gpt2) -> None:
    path = write_config(
        f"""
        models:
          generate:
            options:
              gpt2: {{model_id: "{sharded_gpt2}", framework: transformers, vram_gb: 0.03}}
        """
    )
    m = ModelManager(path, loaders=[TransformersLoader(), ExternalAPILoader()], ledger=Ledger(None))
    events: list[LoadProgress] = []
    m.events.subscribe(events.append, LoadProgress)
    try:
        await m.load_model("generate")
    finally:
        await m.shutdown()
    fractions = [e.fraction for e in events if e.fraction is not None]
    assert fractions and fractions == sorted(fractions)
    assert any(0 < f < 1 for f in fractions)  # the first fraction read passes the rate limit
    assert (events[0].fraction, events[0].stage) == (None, "reading config")
