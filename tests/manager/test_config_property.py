"""Property: a mutated valid config loads or is refused with a one-line ConfigError, in bounded
time, never anything else (no other exception, no hang, no NaN or infinity let through)."""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramdeck.manager import ConfigError, load_config
from vramdeck.manager.config import Config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = """\
base: &base {framework: transformers, vram_gb: 1.5, dtype: bfloat16}
models:
  chat:
    selected: small
    pinned: true
    options:
      small: {<<: *base, model_id: org/small, quantization: 4bit}
      server:
        model_id: org/big
        framework: vllm
        vram_gb: 20
        server_command: [vllm, serve, '{model_id}', --host, '{host}', --port, '{port}']
        server_env: {CUDA_VISIBLE_DEVICES: '0', VLLM_LOGGING_LEVEL: INFO}
        inherit_env: [HF_TOKEN]
        startup_timeout_s: 300
      api: {model_id: claude-x, framework: external_api, provider: anthropic}
inference: {offload_threshold: 0.85, memory_budget_gb: 20, idle_unload_s: 600}
"""
SEEDS = [SMALL, *(p.read_text(encoding="utf-8") for p in sorted(CONFIGS.glob("*.yaml")))]

#: Pieces of YAML that have broken loaders: anchors, aliases, merges, flow brackets, tags, odd
#: numbers and characters.
FRAGMENTS = [
    "&a ", "*a", "&b [*a, *a, *a, *a]", "<<: *a\n", "[", "]", "{", "}", ": ", ", ", "\n", "\n  ",
    "- ", "? ", "#", "'", '"', "|\n", ">\n", "---\n", "...\n", "~", "null", "yes", "no", ".nan",
    ".inf", "-.inf", "1.0e+400", "9" * 40, "7" * 5000, "2024-13-01", "!!binary ", "!!set ",
    "!!python/name:os.system ", "!!str ", "!!float ", "\t", "\x00", "\x07", "\ufeff", "\x85",
    "\u2028", "é", "💥", "\\", "%YAML 1.1\n", "vram_gb: ", "model_id: ", "selected: ",
]  # fmt: skip

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with TimeoutError if the block is still running after `seconds` (a hang guard)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def mutated_text(draw: st.DrawFn) -> bytes:
    """A seed config with a few edits: insert a fragment, delete a span, repeat or drop a line."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "repeat-line", "drop-line"]))
        if edit == "insert":
            text = text[:at] + draw(st.sampled_from(FRAGMENTS)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        else:
            lines = text.splitlines(keepends=True) or [""]
            i = at % len(lines)
            lines[i : i + 1] = [lines[i]] * (2 if edit == "repeat-line" else 0)
            text = "".join(lines)
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@st.composite
def mutated_data(draw: st.DrawFn) -> bytes:
    """A seed config parsed, one value anywhere in it replaced by any YAML value, dumped again."""
    data: Any = yaml.safe_load(draw(st.sampled_from(SEEDS)))
    node, key = data, None
    for _ in range(draw(st.integers(1, 6))):
        children = list(node) if isinstance(node, dict) else range(len(node))
        if not children:
            break
        key = draw(st.sampled_from(list(children)))
        if not isinstance(node[key], dict | list) or draw(st.booleans()):
            break
        node = node[key]
    if key is not None:
        node[key] = draw(VALUES)
    return yaml.safe_dump(data, allow_unicode=True).encode("utf-8")


def assert_loads_or_refuses(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        with time_limit(20):
            config = load_config(path)
    except ConfigError as error:
        message = str(error)
        assert message.startswith(f"{path}"), message
        assert len(message.splitlines()) == 1 and len(message) < 1000, message
        return
    assert isinstance(config, Config)
    numbers = [config.inference.offload_threshold, config.inference.evict_verify_timeout_s]
    numbers += [config.inference.memory_budget_gb or 0, config.inference.idle_unload_s or 0]
    for task in config.tasks.values():
        assert task.selected in task.options
        for option in task.options.values():
            assert option.model_id.strip() and "\0" not in option.model_id
            numbers += [option.vram_gb, option.startup_timeout_s, option.stop_timeout_s]
            assert all(isinstance(v, str) for v in option.server_env.values())
    assert all(math.isfinite(n) for n in numbers)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property") / "models.yaml"


PROPERTY = settings(
    max_examples=100,
    deadline=None,  # a hang is caught by time_limit; speed is not what this test checks
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(data=mutated_text())
def test_mutated_text_loads_or_is_refused_clearly(scratch: Path, data: bytes) -> None:
    assert_loads_or_refuses(scratch, data)


@PROPERTY
@given(data=mutated_data())
def test_any_value_anywhere_loads_or_is_refused_clearly(scratch: Path, data: bytes) -> None:
    assert_loads_or_refuses(scratch, data)


def test_the_seeds_themselves_load(scratch: Path) -> None:
    for seed in SEEDS:
        scratch.write_text(seed, encoding="utf-8")
        assert load_config(scratch).tasks
