"""Smoke tests of the PyInstaller bundle that `make bundle` builds, run as a person runs it.

Skipped when there is no bundle, except under `make bundle-test` (VRAMDECK_REQUIRE_BUNDLE=1),
where a missing bundle fails. The demo must work from the bundle exactly as from `make run`:
every task's model loads (the MiniLM from inside the bundle), warming up evicts, the window does
the same, and the headless commands read the shipped demo config.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.conftest import FITS

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_DIR = ROOT / "dist" / "vramdeck"
BUNDLE = BUNDLE_DIR / "vramdeck"
SELFTEST = BUNDLE_DIR / "vramdeck-selftest"
SHIPPED_DEMO = BUNDLE_DIR / "_internal" / "configs" / "demo.yaml"
REQUIRED = os.environ.get("VRAMDECK_REQUIRE_BUNDLE") == "1"

pytestmark = pytest.mark.skipif(
    not BUNDLE.is_file() and not REQUIRED,
    reason=f"no bundle at {BUNDLE.relative_to(ROOT)}: run `make bundle`",
)


@pytest.fixture(autouse=True)
def _bundle_is_there() -> None:
    assert BUNDLE.is_file(), f"VRAMDECK_REQUIRE_BUNDLE=1 but there is no bundle at {BUNDLE}"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state and cache folder for the module, so the demo models are made once."""
    return tmp_path_factory.mktemp("bundle-home")


def bundle_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "VRAMDECK_STATE_DIR": str(home / "state"),
        "VRAMDECK_CACHE_DIR": str(home / "cache"),
        **extra,
    }
    # The demo's API option must read as "needs a key", whatever the machine has; and the
    # bundle must find its own models, not a source tree's.
    for name in ("ANTHROPIC_API_KEY", "VRAMDECK_MINILM", "VRAMDECK_DEMO_MODELS", "PYTHONPATH"):
        env.pop(name, None)
    return env


def demo_tasks() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED_DEMO.read_text(encoding="utf-8"))["models"]


def cannot_load_here(option: dict[str, Any]) -> bool:
    """The demo's options that a machine without vLLM and without an Anthropic key lacks."""
    return option["framework"] in ("vllm", "sglang") or bool(option.get("requires_api_key"))


@pytest.fixture(scope="module")
def selftest(home: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(SELFTEST)], env=bundle_env(home), capture_output=True, text=True, timeout=900
    )
    assert result.stdout, result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report, indent=2) + result.stderr[-4000:]
    return report


def spans_in(text: str) -> list[dict[str, Any]]:
    """The spans that OpenTelemetry's console exporter printed (JSON objects one after another)."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) != -1:
        try:
            span, at = decoder.raw_decode(text, start)
        except ValueError:
            at = start + 1
            continue
        if isinstance(span, dict) and "name" in span:
            spans.append(span)
    return spans


def test_the_bundle_carries_the_minilm_and_finds_it_itself(selftest):
    assert selftest["frozen"] is True
    minilm = Path(selftest["minilm"])
    assert minilm.is_relative_to(BUNDLE_DIR), minilm
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (minilm / name).is_file(), name
    assert Path(selftest["config"]) == SHIPPED_DEMO


def test_every_demo_task_loads_from_the_bundle_and_warming_up_evicts(selftest):
    tasks = demo_tasks()
    warmup = selftest["warmup"]
    assert sorted(warmup["loaded"]) == sorted(tasks), warmup
    assert warmup["evicted"], "the demo's budget is small: warming up must evict"
    assert warmup["failed"] == []
    expected = {
        f"{task}/{name}": "unavailable" if cannot_load_here(option) else "loaded"
        for task, spec in tasks.items()
        for name, option in spec["options"].items()
    }
    fates = {key: fate.partition(":")[0] for key, fate in selftest["options"].items()}
    assert fates == expected, selftest["options"]
    assert selftest["options"]["embeddings/minilm"] == "loaded"


def test_the_bundled_window_warms_up_the_demo_and_evicts(home, selftest, tmp_path):
    shot = tmp_path / "window.png"
    result = subprocess.run(
        [str(BUNDLE), "--config", str(SHIPPED_DEMO), "--screenshot", str(shot)],
        env=bundle_env(home, OTEL_TRACES_EXPORTER="console", VRAMDECK_SCREENSHOT_SETTLE_S="0"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spans = spans_in(result.stdout)
    loaded = {
        span["attributes"]["vramdeck.task"]
        for span in spans
        if span["name"] == "load_model" and span["attributes"].get("vramdeck.outcome") == "loaded"
    }
    assert loaded == set(demo_tasks()), result.stdout[-4000:]
    assert any(span["name"] == "evict_lru_model" for span in spans), result.stdout[-4000:]


def test_the_bundled_window_starts_and_quits_cleanly(home):
    result = subprocess.run(
        [str(BUNDLE)],
        env=bundle_env(home, VRAMDECK_QUIT_AFTER_S="2"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_the_bundle_runs_the_headless_commands(home, write_config):
    env = bundle_env(home)
    status = subprocess.run(
        [str(BUNDLE), "status", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stderr[-4000:]
    assert json.loads(status.stdout)["devices"]
    validate = subprocess.run(
        [str(BUNDLE), "validate", str(write_config(FITS))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validate.returncode == 0, validate.stderr[-4000:]
    version = subprocess.run([str(BUNDLE), "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.strip() not in ("", "unknown")


def test_the_bundled_validate_reads_the_shipped_demo(home, selftest):
    # The variables the panel and the self-test export (the bundle's own folders).
    env = bundle_env(home)
    env.update(VRAMDECK_MINILM=selftest["minilm"], VRAMDECK_DEMO_MODELS=selftest["demo_models"])
    result = subprocess.run(
        [str(BUNDLE), "validate", str(SHIPPED_DEMO)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Exit 1: the demo's selection does not fit its small budget, on purpose.
    assert result.returncode == 1, result.stdout + result.stderr[-4000:]
    for task in demo_tasks():
        assert task in result.stdout
    assert "is not set" not in result.stdout + result.stderr


def test_the_bundle_leaves_out_what_the_app_never_loads():
    internal = BUNDLE_DIR / "_internal"
    for folder in ("torch/include", "torch/test", "torch/share", "PySide6/Qt/translations"):
        assert not (internal / folder).exists(), folder
    qt_libs = {path.name for path in internal.rglob("libQt6*.so*")}
    for unused in ("Quick", "Qml", "Designer", "Pdf", "Network", "WaylandCompositor"):
        assert f"libQt6{unused}.so.6" not in qt_libs, unused
    for unused in ("sentence_transformers", "sklearn", "scipy", "hypothesis"):
        assert not (internal / unused).exists(), f"vramdeck never imports {unused}"
    assert not list(internal.glob("scipy-*.dist-info")), "metadata of a package left out"
    dangling = [p for p in internal.iterdir() if p.is_symlink() and not p.exists()]
    assert not dangling
    # The self-test is the same program under a second name, not a second copy of the modules.
    assert SELFTEST.is_symlink() and SELFTEST.resolve() == BUNDLE.resolve()


def test_the_bundled_qt_plugins_find_their_qt_libraries():
    """What ldd cannot find among Qt's own libraries would break a real desktop session (the
    offscreen tests above load only the offscreen platform)."""
    internal = BUNDLE_DIR / "_internal"
    plugins = sorted((internal / "PySide6" / "Qt" / "plugins").rglob("*.so"))
    assert any(p.name == "libqxcb.so" for p in plugins) and plugins
    env = {**os.environ, "LD_LIBRARY_PATH": f"{internal}:{internal / 'PySide6' / 'Qt' / 'lib'}"}
    for plugin in plugins:
        ldd = subprocess.run(["ldd", str(plugin)], env=env, capture_output=True, text=True)
        missing = [
            line for line in ldd.stdout.splitlines() if "libQt6" in line and "not found" in line
        ]
        assert not missing, f"{plugin.relative_to(internal)}: {missing}"
