"""models.yaml parsing: the seed's format, our optional keys, and an error for every bad input."""

from __future__ import annotations

import logging

import pytest

from vramdeck.manager import ConfigError, InferenceConfig, ModelConfig, TaskConfig, load_config
from vramdeck.manager.config import GIB

GOOD = """\
# a workstation
models:
  video_summarization:
    selected: gemma
    pinned: true
    options:
      gemma:
        model_id: google/gemma-3-4b-it
        framework: vllm
        vram_gb: 8.5
        quantization: awq
        speed: fast
        description: Gemma 3 4B
        fps: 2
        dtype: bfloat16
        device: cuda
      claude:
        model_id: claude-sonnet-4
        framework: external_api
        provider: anthropic
        api_endpoint: https://api.anthropic.com/v1
        requires_api_key: true
inference:
  max_memory_per_model: auto
  offload_threshold: 0.85
  warmup_on_startup: true
  default_batch_size: 2
  max_batch_size: 16
  memory_budget_gb: 20
  idle_unload_s: 600
"""


def test_reads_the_seed_format_and_our_keys(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    task = config.tasks["video_summarization"]
    assert task.selected == "gemma" and task.pinned
    gemma = task.get_selected_config()
    assert (gemma.model_id, gemma.framework, gemma.quantization) == (
        "google/gemma-3-4b-it",
        "vllm",
        "awq",
    )
    assert gemma.vram_bytes == int(8.5 * GIB) and gemma.fps == 2 and gemma.speed == "fast"
    assert gemma.device == "cuda:0" and gemma.dtype == "bfloat16" and not gemma.trust_remote_code
    claude = task.options["claude"]
    assert claude.is_external and claude.requires_api_key and claude.provider == "anthropic"
    assert claude.api_key_env == "ANTHROPIC_API_KEY"
    inf = config.inference
    assert inf.offload_threshold == 0.85 and inf.warmup_on_startup
    assert (inf.default_batch_size, inf.max_batch_size) == (2, 16)
    assert inf.memory_budget_bytes == 20 * GIB and inf.idle_unload_s == 600


def test_classes_construct_from_dicts_as_the_seed_says():
    option = ModelConfig({"model_id": "m", "framework": "pytorch", "vram_gb": 2})
    assert option.vram_bytes == 2 * GIB and option.quantization is None
    task = TaskConfig("t", {"selected": "a", "options": {"a": {"model_id": "x"}}})
    assert task.get_selected_config().model_id == "x"
    inference = InferenceConfig({})
    assert inference.memory_budget_gb is None and inference.idle_unload_s is None
    # The original's defaults, exactly.
    assert inference.max_memory_per_model == "auto" and inference.offload_threshold == 0.85
    assert inference.warmup_on_startup is False
    assert (inference.default_batch_size, inference.max_batch_size) == (1, 8)


def test_unknown_keys_are_kept_and_logged_once(tmp_path, caplog):
    path = tmp_path / "m.yaml"
    path.write_text("models:\n  t:\n    options:\n      a: {model_id: x, future_key: 3}\n")
    with caplog.at_level(logging.WARNING):
        config = load_config(path)
        load_config(path)
    assert config.tasks["t"].options["a"].extra == {"future_key": 3}
    warnings = [r for r in caplog.records if "future_key" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("text", "line", "key", "expected"),
    [
        ("models:\n  t: {options: [\n", 3, "models.t.options", "invalid YAML"),
        ("inference: {}\n", None, "models", "missing the 'models' map"),
        ("", None, "", "the file is empty"),
        ("- a\n- b\n", 1, "", "expected a mapping at the top level"),
        (
            "models:\n  t:\n    selected: nope\n    options:\n      a: {model_id: x}\n",
            3,
            "models.t.selected",
            "names no option: 'nope'; expected one of a",
        ),
        (
            "models:\n  t:\n    options:\n      a:\n        model_id: x\n        vram_gb: -2\n",
            6,
            "models.t.options.a.vram_gb",
            "expected a number ≥ 0, got int -2",
        ),
        (
            "models:\n  t:\n    options:\n      a:\n        model_id: x\n        vram_gb: lots\n",
            6,
            "models.t.options.a.vram_gb",
            "expected a number ≥ 0, got 'lots'",
        ),
        (
            "models:\n  t:\n    options:\n      a: {model_id: x}\ninference:\n  offload_threshold: 1.5\n",
            6,
            "inference.offload_threshold",
            "expected a number in (0, 1], got float 1.5",
        ),
        (
            "models:\n  t:\n    options:\n      a: {model_id: x}\ninference:\n  offload_threshold: 0\n",
            6,
            "inference.offload_threshold",
            "in (0, 1]",
        ),
        (
            "models:\n  t:\n    options:\n      a: {model_id: x, requires_api_key: 'yes'}\n",
            4,
            "models.t.options.a.requires_api_key",
            "expected true or false",
        ),
        (
            "models:\n  t:\n    options:\n      a: {model_id: 42}\n",
            4,
            "models.t.options.a.model_id",
            "expected a string, got int 42",
        ),
        (
            "models:\n  t:\n    options:\n      a: {framework: vllm}\n",
            4,
            "models.t.options.a.model_id",
            "missing",
        ),
        ("models:\n  t: [1, 2]\n", 2, "models.t", "expected a mapping"),
        ("models:\n  t:\n    options: {}\n", 3, "models.t.options", "at least one model option"),
        (
            "models:\n  t:\n    options:\n      a: {model_id: x, device: gpu}\n",
            4,
            "models.t.options.a.device",
            "expected auto | cpu | cuda | cuda:N, got 'gpu'",
        ),
        (
            "models:\n  t:\n    options:\n      a: {model_id: x, dtype: int3}\n",
            4,
            "models.t.options.a.dtype",
            "expected one of auto, float32, bfloat16, float16",
        ),
        (
            "models:\n  t:\n    options:\n      a: {model_id: x}\ninference:\n  max_batch_size: 0\n",
            6,
            "inference.max_batch_size",
            "expected a whole number ≥ 1",
        ),
    ],
)
def test_bad_input_names_file_line_key_and_expectation(tmp_path, text, line, key, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path) + (f":{line}" if line else ""))
    assert expected in message
    assert err.value.line == line and err.value.key == key


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nowhere.yaml")


def test_unknown_framework_loads_but_marks_the_option_unavailable(write_config):
    from vramdeck.manager import ModelManager

    path = write_config(
        "models:\n  t:\n    options:\n"
        "      a: {model_id: x, framework: tensorrt}\n"
        "      b: {model_id: y, framework: vllm}\n"
        "      c: {model_id: z, framework: transformers}\n"
    )
    m = ModelManager(path)
    options = m.tasks["t"].options
    assert "no loader for framework 'tensorrt'" in (options["a"].unavailable_reason or "")
    assert "vramdeck.loaders" in (options["a"].unavailable_reason or "")
    assert options["b"].unavailable_reason  # no vLLM here: says what to install
    assert options["c"].available
    assert m.task_state("t") == "unavailable"


def test_only_safe_yaml_is_read(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("models: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
