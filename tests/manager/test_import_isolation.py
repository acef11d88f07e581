"""`import vramdeck.manager` must load no Qt (the layers point one way) and no torch (start-up speed)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "qasync", "pyqtgraph", "torch", "transformers")


def test_importing_manager_loads_no_qt_and_no_torch():
    code = (
        "import sys, vramdeck.manager, vramdeck.manager.loaders, vramdeck.manager.model_manager\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_constructing_a_manager_imports_no_torch(tmp_path):
    # With no NVIDIA library, the probe must not import torch just to learn there is no GPU.
    config = tmp_path / "m.yaml"
    config.write_text("models: {t: {options: {a: {model_id: x}}}}\n")
    code = (
        "import sys, vramdeck.manager as manager\n"
        f"m = manager.ModelManager({str(config)!r})\n"
        "m.validate_memory_budget()\n"
        "print(m.probe.name, 'torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    probe, torch_loaded = result.stdout.split()
    assert torch_loaded == ("True" if probe == "torch" else "False")
