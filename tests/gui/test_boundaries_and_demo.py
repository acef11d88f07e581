"""The layering rule inside gui/, and the demo models the app makes on first run."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vramdeck.gui import demo_models

GUI = Path(__file__).resolve().parents[2] / "gui"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_the_bridge_imports_the_manager() -> None:
    importers = sorted(
        p.name
        for p in GUI.glob("*.py")
        if any(
            m == "vramdeck.manager" or m.startswith("vramdeck.manager.")
            for m in imported_modules(p)
        )
    )
    assert importers == ["bridge.py", "bridge_records.py"]  # the bridge, in two modules


def test_the_window_does_not_import_torch() -> None:
    code = (
        "import sys; from vramdeck.gui.bridge import open_bridge; from vramdeck.gui.main_window import MainWindow;"
        "from PySide6.QtWidgets import QApplication; app = QApplication([]);"
        "w = MainWindow(open_bridge('configs/demo.yaml')); w.show(); app.processEvents();"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    root = GUI.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def tiny_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's specs, shrunk, so that making them takes milliseconds."""
    specs = {
        "gpt2-small": ("gpt2", dict(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)),
        "bert-mini": ("bert", dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64, vocab_size=64, num_labels=3,
                                   max_position_embeddings=16)),
    }  # fmt: skip
    monkeypatch.setattr(demo_models, "SPECS", specs)
    monkeypatch.setattr(demo_models, "SPEC_VERSION", json.dumps(specs, sort_keys=True))


def test_demo_models_are_made_once_and_whole(tiny_specs: None, tmp_path: Path) -> None:
    folder = tmp_path / "demo-models"
    stages: list[str] = []
    assert demo_models.ensure_demo_models(folder, stages.append) == folder
    assert demo_models.is_complete(folder)
    assert (folder / "gpt2-small" / "model.safetensors").is_file()
    assert (folder / "bert-mini" / "config.json").is_file()
    assert stages[-1] == "making bert-mini (2/2)"
    assert not list(tmp_path.glob(".demo-models-*"))  # the temporary folder was renamed
    made = (folder / "gpt2-small" / "model.safetensors").stat().st_mtime_ns
    stages.clear()
    demo_models.ensure_demo_models(folder, stages.append)
    assert stages == []  # the second time, nothing is made
    assert (folder / "gpt2-small" / "model.safetensors").stat().st_mtime_ns == made


def test_a_half_made_folder_is_made_again(tiny_specs: None, tmp_path: Path) -> None:
    folder = tmp_path / "demo-models"
    (folder / "gpt2-small").mkdir(parents=True)  # a run killed half way, before the marker
    demo_models.ensure_demo_models(folder)
    assert demo_models.is_complete(folder)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder / "gpt2-small")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_environment_points_the_demo_config_at_the_models(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(demo_models.DEMO_ENV, raising=False)
    monkeypatch.delenv(demo_models.MINILM_ENV, raising=False)
    monkeypatch.setenv("VRAMDECK_CACHE_DIR", str(tmp_path))
    demo_models.export_env()
    import os

    assert os.environ[demo_models.DEMO_ENV] == str(tmp_path / "demo-models")
    assert Path(os.environ[demo_models.MINILM_ENV], "config.json").is_file()
    assert demo_models.uses_demo_models(["${VRAMDECK_DEMO_MODELS}/gpt2-small", "org/x"])
    assert not demo_models.uses_demo_models(["org/x"])


def test_garbage_is_collected_on_the_gui_thread_only(qtbot) -> None:
    import gc
    import threading

    from vramdeck.gui.gc_guard import GuiThreadCollector

    collector = GuiThreadCollector(interval_ms=5)
    collected_in: list[str] = []

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            collected_in.append(threading.current_thread().name)

    collector.start()
    try:
        assert not gc.isenabled()
        for _ in range(5000):  # past the young generation's threshold
            Cycle()
        qtbot.waitUntil(lambda: len(collected_in) > 100, timeout=3000)
    finally:
        collector.stop()
        collector.deleteLater()
    assert gc.isenabled()
    assert set(collected_in) == {threading.main_thread().name}
