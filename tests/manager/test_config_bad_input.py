"""Bad input, one case each: a ConfigError naming file, line and key, and `vramdeck validate`
exiting 2 with that same message as its only line (never a traceback, never exit 1)."""

from __future__ import annotations

import codecs
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from vramdeck import cli
from vramdeck.manager import ConfigError, load_config


def option(*lines: str) -> str:
    """A config whose one option ``models.t.options.a`` has `lines` (the first at line 5)."""
    return "models:\n  t:\n    options:\n      a:\n" + "".join(f"        {x}\n" for x in lines)


def inference(*lines: str) -> str:
    """A valid task, then an ``inference`` map with `lines` (the first at line 6)."""
    head = "models:\n  t:\n    options:\n      a: {model_id: x}\ninference:\n"
    return head + "".join(f"  {x}\n" for x in lines)


def task(*lines: str) -> str:
    """A task ``models.t`` with `lines` (the first at line 3) and no options unless given."""
    return "models:\n  t:\n" + "".join(f"    {x}\n" for x in lines)


OPT = "models.t.options.a"
INF = "inference"
BILLION_LAUGHS = "models:\n  t:\n    options:\n      a:\n        model_id: x\n" + "".join(
    f"        l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['lol'] * 9)}]\n"
    for i in range(10)
)
MAP_BOMB = "models:\n  t:\n    options:\n      a:\n        model_id: x\n" + "".join(
    f"        m{i}: &m{i} {{"
    + ", ".join(f"k{j}: {f'*m{i - 1}' if i else 'lol'}" for j in range(9))
    + "}\n"
    for i in range(10)
)

# (id, text, line, key, a fragment of the message)
# fmt: off
CASES: list[tuple[str, str, int | None, str, str]] = [
    # numbers: NaN, infinity, out of range, wrong type
    ("vram-nan", option("model_id: x", "vram_gb: .nan"), 6, f"{OPT}.vram_gb", "got float nan"),
    ("vram-inf", option("model_id: x", "vram_gb: .inf"), 6, f"{OPT}.vram_gb", "≤ 1e+06"),
    ("vram-neg-inf", option("model_id: x", "vram_gb: -.inf"), 6, f"{OPT}.vram_gb", "≥ 0"),
    ("vram-overflow", option("model_id: x", "vram_gb: 1.0e+400"), 6, f"{OPT}.vram_gb", "inf"),
    ("vram-huge-int", option("model_id: x", "vram_gb: " + "9" * 400), 6, f"{OPT}.vram_gb", "≤"),
    ("vram-petabytes", option("model_id: x", "vram_gb: 2000000"), 6, f"{OPT}.vram_gb", "≤"),
    ("vram-bool", option("model_id: x", "vram_gb: true"), 6, f"{OPT}.vram_gb", "bool True"),
    ("vram-list", option("model_id: x", "vram_gb: [8]"), 6, f"{OPT}.vram_gb", "got list"),
    ("vram-text", option("model_id: x", "vram_gb: '8'"), 6, f"{OPT}.vram_gb", "got '8'"),
    ("vram-negative", option("model_id: x", "vram_gb: -2"), 6, f"{OPT}.vram_gb", "≥ 0, got int"),
    ("startup-nan", option("model_id: x", "startup_timeout_s: .nan"), 6, f"{OPT}.startup_timeout_s", "nan"),
    ("startup-inf", option("model_id: x", "startup_timeout_s: .inf"), 6, f"{OPT}.startup_timeout_s", "≤ 1e+09"),
    ("stop-negative", option("model_id: x", "stop_timeout_s: -1"), 6, f"{OPT}.stop_timeout_s", "≥"),
    ("fps-nan", option("model_id: x", "fps: .NaN"), 6, f"{OPT}.fps", "nan"),
    ("threshold-nan", inference("offload_threshold: .nan"), 6, f"{INF}.offload_threshold", "nan"),
    ("threshold-inf", inference("offload_threshold: .inf"), 6, f"{INF}.offload_threshold", "inf"),
    ("threshold-big", inference("offload_threshold: 1.5"), 6, f"{INF}.offload_threshold", "(0, 1]"),
    ("threshold-zero", inference("offload_threshold: 0"), 6, f"{INF}.offload_threshold", "(0, 1]"),
    ("threshold-bool", inference("offload_threshold: true"), 6, f"{INF}.offload_threshold", "bool"),
    ("budget-nan", inference("memory_budget_gb: .nan"), 6, f"{INF}.memory_budget_gb", "nan"),
    ("budget-inf", inference("memory_budget_gb: .inf"), 6, f"{INF}.memory_budget_gb", "inf"),
    ("budget-negative", inference("memory_budget_gb: -1"), 6, f"{INF}.memory_budget_gb", "≥ 0"),
    ("idle-nan", inference("idle_unload_s: .nan"), 6, f"{INF}.idle_unload_s", "nan"),
    ("idle-overflow", inference("idle_unload_s: 1.0e+400"), 6, f"{INF}.idle_unload_s", "inf"),
    ("verify-inf", inference("evict_verify_timeout_s: .inf"), 6, f"{INF}.evict_verify_timeout_s", "inf"),
    ("batch-zero", inference("max_batch_size: 0"), 6, f"{INF}.max_batch_size", "whole number"),
    ("batch-float", inference("default_batch_size: 1.5"), 6, f"{INF}.default_batch_size", "whole"),
    ("max-memory-words", inference("max_memory_per_model: lots"), 6, f"{INF}.max_memory_per_model", "'20GB'"),
    ("max-memory-nan", inference("max_memory_per_model: .nan"), 6, f"{INF}.max_memory_per_model", "nan"),
    ("max-memory-list", inference("max_memory_per_model: [20GB]"), 6, f"{INF}.max_memory_per_model", "list"),
    ("warmup-text", inference("warmup_on_startup: 'yes'"), 6, f"{INF}.warmup_on_startup", "true or false"),
    ("inference-list", inference("- 1"), 5, INF, "expected a mapping"),
    ("inference-empty-list", inference()[:-1] + " []\n", 5, INF, "got list []"),
    ("inference-zero", inference()[:-1] + " 0\n", 5, INF, "got int 0"),
    # strings: blank, missing, the wrong shape, a NUL character
    ("model-id-empty", option("model_id: ''"), 5, f"{OPT}.model_id", "non-empty string"),
    ("model-id-blank", option("model_id: '   '"), 5, f"{OPT}.model_id", "non-empty string"),
    ("model-id-null", option("model_id:", "vram_gb: 1"), 5, f"{OPT}.model_id", "missing"),
    ("model-id-list", option("model_id: [a, b]"), 5, f"{OPT}.model_id", "got list"),
    ("model-id-map", option("model_id: {a: 1}"), 5, f"{OPT}.model_id", "got dict"),
    ("model-id-nul", option('model_id: "a\\0b"'), 5, f"{OPT}.model_id", "NUL"),
    ("model-id-number", option("model_id: 42"), 5, f"{OPT}.model_id", "got int 42"),
    ("framework-map", option("model_id: x", "framework: {x: 1}"), 6, f"{OPT}.framework", "dict"),
    ("description-list", option("model_id: x", "description: [a]"), 6, f"{OPT}.description", "list"),
    ("speed-number", option("model_id: x", "speed: 3"), 6, f"{OPT}.speed", "got int 3"),
    ("endpoint-map", option("model_id: x", "api_endpoint: {url: x}"), 6, f"{OPT}.api_endpoint", "dict"),
    ("quant-list", option("model_id: x", "quantization: [4bit]"), 6, f"{OPT}.quantization", "list"),
    ("quant-bool", option("model_id: x", "quantization: true"), 6, f"{OPT}.quantization", "True"),
    ("quant-empty", option("model_id: x", "quantization: ''"), 6, f"{OPT}.quantization", "'4bit'"),
    ("device-list", option("model_id: x", "device: [cuda]"), 6, f"{OPT}.device", "got list"),
    ("device-name", option("model_id: x", "device: cuda:x"), 6, f"{OPT}.device", "cuda:N"),
    ("dtype-unknown", option("model_id: x", "dtype: int3"), 6, f"{OPT}.dtype", "float16"),
    ("api-key-text", option("model_id: x", "requires_api_key: 'yes'"), 6, f"{OPT}.requires_api_key", "true or false"),
    ("remote-code-int", option("model_id: x", "trust_remote_code: 1"), 6, f"{OPT}.trust_remote_code", "int 1"),
    ("pickle-text", option("model_id: x", "allow_pickle: 'true'"), 6, f"{OPT}.allow_pickle", "'true'"),
    # server_env, server_command, inherit_env
    ("env-value-list", option("model_id: x", "server_env:", "  A: [1, 2]"), 7, f"{OPT}.server_env.A", "got list"),
    ("env-value-map", option("model_id: x", "server_env:", "  A: {b: 1}"), 7, f"{OPT}.server_env.A", "got dict"),
    ("env-value-bool", option("model_id: x", "server_env:", "  A: yes"), 7, f"{OPT}.server_env.A", "quote it"),
    ("env-value-null", option("model_id: x", "server_env:", "  A:"), 7, f"{OPT}.server_env.A", "NoneType"),
    ("env-value-nan", option("model_id: x", "server_env:", "  A: .nan"), 7, f"{OPT}.server_env.A", "nan"),
    ("env-value-nul", option("model_id: x", "server_env:", '  A: "x\\0"'), 7, f"{OPT}.server_env.A", "NUL"),
    ("env-name", option("model_id: x", "server_env:", "  1A: x"), 7, f"{OPT}.server_env.1A", "variable name"),
    ("env-list", option("model_id: x", "server_env: [A, B]"), 6, f"{OPT}.server_env", "mapping"),
    ("command-empty", option("model_id: x", "server_command: []"), 6, f"{OPT}.server_command", "list of strings"),
    ("command-string", option("model_id: x", "server_command: vllm serve"), 6, f"{OPT}.server_command", "got 'vllm serve'"),
    ("command-nested", option("model_id: x", "server_command: [vllm, [serve]]"), 6, f"{OPT}.server_command[1]", "got list"),
    ("command-map", option("model_id: x", "server_command: [vllm, {a: 1}]"), 6, f"{OPT}.server_command[1]", "got dict"),
    ("command-bool", option("model_id: x", "server_command: [vllm, true]"), 6, f"{OPT}.server_command[1]", "quote it"),
    ("command-no-program", option("model_id: x", "server_command: ['', x]"), 6, f"{OPT}.server_command[0]", "program"),
    ("inherit-string", option("model_id: x", "inherit_env: HF_TOKEN"), 6, f"{OPT}.inherit_env", "list of strings (variable names), got 'HF_TOKEN'"),
    ("inherit-dash", option("model_id: x", "inherit_env: [HF-TOKEN]"), 6, f"{OPT}.inherit_env", "got 'HF-TOKEN' (item 1)"),
    ("inherit-number", option("model_id: x", "inherit_env: [HOME, 1]"), 6, f"{OPT}.inherit_env", "got int 1 (item 2)"),
    ("inherit-nested", option("model_id: x", "inherit_env: [[HOME]]"), 6, f"{OPT}.inherit_env", "got list ['HOME'] (item 1)"),
    # the shape of tasks and options
    ("selected-list", task("selected: [a]", "options: {a: {model_id: x}}"), 3, "models.t.selected", "got list"),
    ("selected-nothing", task("selected: nope", "options: {a: {model_id: x}}"), 3, "models.t.selected", "names no option"),
    ("pinned-text", task("pinned: 'no'", "options: {a: {model_id: x}}"), 3, "models.t.pinned", "true or false"),
    ("options-list", task("options: [a, b]"), 3, "models.t.options", "expected a mapping"),
    ("options-empty", task("options: {}"), 3, "models.t.options", "at least one"),
    ("options-missing", task("selected: a"), 2, "models.t.options", "NoneType"),
    ("task-string", "models:\n  t: hello\n", 2, "models.t", "got 'hello'"),
    ("option-list", task("options:", "  a: [1]"), 4, OPT, "got list"),
    ("option-null", task("options:", "  a:"), 4, OPT, "NoneType"),
    # the top level
    ("empty", "", None, "", "the file is empty"),
    ("only-comments", "# nothing here\n\n", None, "", "the file is empty"),
    ("top-list", "- a\n- b\n", 1, "", "mapping at the top level"),
    ("top-scalar", "hello\n", 1, "", "got 'hello'"),
    ("no-models", "inference: {}\n", None, "models", "missing the 'models' map"),
    ("models-list", "models: [a]\n", 1, "models", "expected a mapping"),
    ("models-empty", "models: {}\n", 1, "models", "at least one task"),
    ("models-null", "models:\n", 1, "models", "NoneType"),
    # duplicate keys, both lines named
    ("dup-value", option("model_id: x", "vram_gb: 1", "vram_gb: 2"), 7, f"{OPT}.vram_gb", "lines 6 and 7"),
    ("dup-task", "models:\n  t: {options: {a: {model_id: x}}}\n  t: {options: {b: {model_id: y}}}\n", 3, "models.t", "lines 2 and 3"),
    ("dup-option", task("options:", "  a: {model_id: x}", "  a: {model_id: y}"), 5, OPT, "lines 4 and 5"),
    ("dup-top", "models: {t: {options: {a: {model_id: x}}}}\nmodels: {}\n", 2, "models", "lines 1 and 2"),
    ("dup-flow", option("{model_id: x, model_id: y}")[:-1].replace("a:\n        {", "a: {") + "\n", 4, f"{OPT}.model_id", "duplicate key 'model_id'"),
    ("dup-quoted", task("options:", "  a: {model_id: x}", "  'a': {model_id: y}"), 5, OPT, "duplicate"),
    ("dup-octal", task("options:", "  1: {model_id: x}", "  01: {model_id: y}"), 5, "models.t.options.01", "lines 4 and 5"),
    ("dup-bool", task("options:", "  true: {model_id: x}", "  yes: {model_id: y}"), 5, "models.t.options.yes", "lines 4 and 5"),
    ("dup-env", option("model_id: x", "server_env:", "  A: 1", "  A: 2"), 8, f"{OPT}.server_env.A", "lines 7 and 8"),
    # keys that are not names
    ("key-list", task("options:", "  ? [a, b]", "  : {model_id: x}"), 4, "models.t.options", "must be a name"),
    ("key-long", task("options:", "  " + "k" * 300 + ": {model_id: x}"), 4, "models.t.options", "300 characters"),
    # aliases: bombs, self-reference, undefined
    ("bomb-list", BILLION_LAUGHS, 10, f"{OPT}.l4[5]", "more than 50000 values"),
    ("bomb-map", MAP_BOMB, 10, f"{OPT}.m4.k2", "more than 50000 values"),
    ("alias-self-list", option("model_id: x", "l: &l [1, *l]"), 6, f"{OPT}.l[1]", "contains itself"),
    ("alias-self-map", option("model_id: x", "m: &m {n: *m}"), 6, f"{OPT}.m.n", "contains itself"),
    ("alias-undefined", option("model_id: *nowhere"), 5, f"{OPT}.model_id", "undefined alias"),
    ("merge-scalar", option("<<: 3", "model_id: x"), 5, f"{OPT}.<<", "for merging"),
    # nesting
    ("deep-flow-list", "models: " + "[" * 50_000, 1, "models" + "[0]" * 63, "deeper than 64"),
    ("deep-flow-map", "models: " + "{a: " * 20_000, 1, "models" + ".a" * 62, "deeper than 64"),
    ("deep-block", "".join(" " * i + f"k{i}:\n" for i in range(200)), 64, ".".join(f"k{i}" for i in range(63)), "deeper than 64"),
    ("deep-key", "models:\n  ? " + "[" * 10_000 + "\n", 2, "models" + "[0]" * 62, "deeper than 64"),
    # text that is not YAML the safe loader builds
    ("unclosed-quote", option('model_id: "x'), 6, f"{OPT}.model_id", "invalid YAML"),
    ("unclosed-flow", "models:\n  t: {options: [\n", 3, "models.t.options", "invalid YAML"),
    ("tab-indent", "models:\n\tt: x\n", 2, "models", "invalid YAML"),
    ("python-tag", option("model_id: !!python/object/apply:os.system [echo]"), 5, f"{OPT}.model_id", "invalid YAML"),
    ("bad-date", option("model_id: x", "description: 2024-13-01"), 6, f"{OPT}.description", "month must be in 1..12"),
    ("int-too-long", option("model_id: x", "fps: " + "7" * 5000), 6, f"{OPT}.fps", "cannot read the value"),
    ("control-char", option("model_id: x\x07"), 5, "", "0x0007 is not allowed"),
    ("two-documents", "models: {}\n---\nmodels: {}\n", 2, "", "single document"),
]
# fmt: on

# (id, bytes, line, a fragment): files that are not UTF-8 text, written as they are
# fmt: off
BYTE_CASES: list[tuple[str, bytes, int | None, str]] = [
    ("utf16-le-bom", codecs.BOM_UTF16_LE + "models: {}\n".encode("utf-16-le"), 1, "UTF-16"),
    ("utf16-be-bom", codecs.BOM_UTF16_BE + "models: {}\n".encode("utf-16-be"), 1, "UTF-16"),
    ("utf16-no-bom", "models:\n  t: {}\n".encode("utf-16-le"), 1, "UTF-16 text without"),
    ("utf32-bom", codecs.BOM_UTF32_LE + "models: {}\n".encode("utf-32-le"), 1, "UTF-32"),
    ("latin-1", "models:\n  t:\n    description: café\n".encode("latin-1"), 3, "0xe9 is not UTF-8"),
    ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 3, "NUL byte (a binary file?)"),
    ("nul-inside", b"models:\n  t:\n    options:\x00\n", 3, "NUL byte"),
    ("all-bytes", bytes(range(256)), 1, "NUL byte"),
    ("bad-utf8-tail", b"models: {}\n# \xc3\n", 2, "0xc3 is not UTF-8"),
    ("too-large", b"# " + b"x" * (1024 * 1024) + b"\n", None, "larger than 1 MiB"),
]
# fmt: on


def _validate(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["validate", str(path)])
    return code, out.getvalue(), err.getvalue()


def _check(path: Path, line: int | None, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    message = str(error)
    assert (error.file, error.line, error.key) == (str(path), line, key), message
    assert message.startswith(str(path) + (f":{line}" if line else "") + ": "), message
    assert fragment in message
    assert len(message) < 600 and len(message.splitlines()) == 1
    code, out, err = _validate(path)
    assert (code, out, err) == (2, "", f"vramdeck validate: error: {message}\n")


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_text_is_refused_naming_file_line_and_key(tmp_path, text, line, key, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    _check(path, line, key, fragment)


@pytest.mark.parametrize(
    ("data", "line", "fragment"), [c[1:] for c in BYTE_CASES], ids=[c[0] for c in BYTE_CASES]
)
def test_files_that_are_not_utf8_text_are_refused_naming_the_line(tmp_path, data, line, fragment):
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    _check(path, line, "", fragment)


def test_there_are_at_least_sixty_bad_inputs():
    assert len(CASES) + len(BYTE_CASES) >= 60
    assert len({c[0] for c in CASES} | {c[0] for c in BYTE_CASES}) == len(CASES) + len(BYTE_CASES)
