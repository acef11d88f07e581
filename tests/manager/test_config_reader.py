"""The safe reader's limits in time and memory, the seed's exception types, and what still loads."""

from __future__ import annotations

import errno
import signal
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml

from vramdeck.manager import ConfigError, InferenceConfig, ModelManager, load_config
from vramdeck.manager.config_yaml import MAX_NODES


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


def peak_bytes_refusing(path) -> tuple[int, ConfigError]:
    """The most memory Python held while load_config(path) refused it, and its error."""
    tracemalloc.start()
    try:
        with time_limit(60), pytest.raises(ConfigError) as caught:
            load_config(path)
        return tracemalloc.get_traced_memory()[1], caught.value
    finally:
        tracemalloc.stop()


def _bomb(levels: int, width: int, *, mapping: bool) -> str:
    head = "models:\n  t:\n    options:\n      a:\n        model_id: x\n"
    rows = []
    for i in range(levels):
        item = f"*b{i - 1}" if i else "lol"
        if mapping:
            rows.append(
                f"        b{i}: &b{i} {{{', '.join(f'k{j}: {item}' for j in range(width))}}}"
            )
        else:
            rows.append(f"        b{i}: &b{i} [{', '.join([item] * width)}]")
    return head + "\n".join(rows) + "\n"


@pytest.mark.parametrize("mapping", [False, True], ids=["list", "map"])
def test_an_alias_bomb_of_billions_of_nodes_is_refused_in_little_memory(tmp_path, mapping):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(12, 10, mapping=mapping))  # 10**12 values when expanded
    peak, error = peak_bytes_refusing(path)
    assert f"more than {MAX_NODES} values with its aliases expanded" in str(error)
    assert error.line is not None and error.key.startswith("models.t.options.a.b")
    assert peak < 16 * 1024**2, f"{peak / 1024**2:.1f} MiB held"
    assert len(str(error)) < 400


def test_a_value_is_never_printed_whole(tmp_path):
    huge = "x" * 500_000
    path = tmp_path / "m.yaml"
    path.write_text(f"models:\n  t:\n    options:\n      a: {{model_id: [{huge}, {huge}]}}\n")
    with pytest.raises(ConfigError, match="expected a string, got list") as caught:
        load_config(path)
    message = str(caught.value)
    assert len(message) < 300 and "xxx...xxx" in message


@pytest.mark.parametrize(
    "text",
    ["models: " + "[" * 20_000, "models: " + "{a: " * 20_000, "? " * 20_000 + "x"],
    ids=["lists", "maps", "keys"],
)
def test_deep_nesting_is_refused_without_recursion_error(tmp_path, text):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    peak, error = peak_bytes_refusing(path)
    assert "nested deeper than 64 levels" in str(error)
    assert peak < 64 * 1024**2


def test_a_missing_file_is_a_file_not_found_error_as_the_original_raised(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(FileNotFoundError) as caught:
        load_config(missing)
    assert isinstance(caught.value, ConfigError) and str(caught.value).endswith("no such file")
    assert caught.value.errno == errno.ENOENT and caught.value.filename == str(missing)
    with pytest.raises(FileNotFoundError):
        ModelManager(missing)


@pytest.mark.parametrize(
    "text",
    ["models: [oops\n", "models:\n\tt: 1\n", "a: 1\na: 2\n", "models: !!python/name:os.system\n"],
    ids=["unclosed", "tab", "duplicate", "unsafe-tag"],
)
def test_text_that_is_not_yaml_is_a_yaml_error_as_the_original_raised(tmp_path, text):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(yaml.YAMLError) as caught:
        load_config(path)
    assert isinstance(caught.value, ConfigError) and str(caught.value).startswith(f"{path}:")
    with pytest.raises(yaml.YAMLError):
        ModelManager(path)


def test_a_config_error_that_is_not_about_yaml_is_neither():
    with pytest.raises(ConfigError) as caught:
        InferenceConfig({"offload_threshold": 2})
    assert not isinstance(caught.value, yaml.YAMLError | FileNotFoundError)
    assert isinstance(caught.value, ValueError)


def test_inference_defaults_are_the_originals():
    inference = InferenceConfig({})
    assert inference.max_memory_per_model == "auto"
    assert inference.offload_threshold == 0.85
    assert inference.warmup_on_startup is False
    assert inference.default_batch_size == 1 and inference.max_batch_size == 8


def test_anchors_merge_keys_and_a_utf8_bom_still_load(tmp_path):
    path = tmp_path / "m.yaml"
    text = (
        "\ufeff# shared settings\n"
        "base: &base {framework: transformers, dtype: bfloat16, vram_gb: 2}\n"
        "models:\n"
        "  chat:\n"
        "    options:\n"
        "      small: {<<: *base, model_id: org/small}\n"
        "      big:\n"
        "        <<: *base\n"
        "        model_id: org/big\n"
        "        vram_gb: 9.5\n"
        "        server_env: {CUDA_VISIBLE_DEVICES: 1, NCCL_P2P_DISABLE: '1'}\n"
        "        inherit_env: [HF_TOKEN, HF_HOME]\n"
        "        description: café ☕\n"
    )
    path.write_bytes(text.encode("utf-8"))
    config = load_config(path)
    small, big = config.tasks["chat"].options.values()
    assert (small.dtype, small.vram_gb, small.model_id) == ("bfloat16", 2.0, "org/small")
    assert (big.dtype, big.vram_gb, big.description) == ("bfloat16", 9.5, "café ☕")
    assert big.server_env == {"CUDA_VISIBLE_DEVICES": "1", "NCCL_P2P_DISABLE": "1"}
    assert big.inherit_env == ("HF_TOKEN", "HF_HOME") and small.inherit_env == ()
    assert config.raw["base"]["vram_gb"] == 2  # unknown top-level keys are kept


def test_a_large_realistic_config_loads_under_the_limits(tmp_path):
    rows = ["models:"]
    for t in range(300):  # 300 tasks × 4 options: far more than a workstation has
        rows += [f"  task{t}:", "    options:"]
        for o in range(4):
            rows.append(f"      o{o}: {{model_id: org/m{t}-{o}, vram_gb: {o + 1}, speed: fast}}")
    path = tmp_path / "big.yaml"
    path.write_text("\n".join(rows) + "\n")
    with time_limit(60):
        config = load_config(path)
    assert len(config.tasks) == 300 and config.tasks["task299"].options["o3"].vram_gb == 4


def test_saving_selections_keeps_a_byte_order_mark_and_refuses_a_binary_file(tmp_path):
    from vramdeck.manager.config_store import save_selections

    path = tmp_path / "m.yaml"
    text = (
        "\ufeffmodels:\n  t:\n    selected: a\n    options: {a: {model_id: x}, b: {model_id: y}}\n"
    )
    path.write_bytes(text.encode("utf-8"))
    save_selections(path, {"t": "b"})
    assert path.read_bytes() == text.replace("selected: a", "selected: b").encode("utf-8")
    path.write_bytes(b"models:\n  t: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"m\.yaml:2: byte 0xff is not UTF-8"):
        save_selections(path, {"t": "a"})


def test_errors_keep_their_type_and_message_across_processes(tmp_path):
    import pickle

    for text in (None, "models: [oops\n", "models: {}\n"):
        path = tmp_path / "m.yaml"
        if text is not None:
            path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        copy = pickle.loads(pickle.dumps(caught.value))
        assert (type(copy), str(copy)) == (type(caught.value), str(caught.value))
