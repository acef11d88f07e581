"""The layering rule inside gui/ (the demo models' tests are in tests/cli/test_demo_models.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
            m.split(".")[:2] in (["vramdeck", "manager"], ["vramdeck", "serving"])
            for m in imported_modules(p)
        )
    )
    # The bridge, in five modules: events and commands, where the manager's collections run,
    # records, this round's API, serving.
    assert importers == [
        "bridge.py", "bridge_collections.py", "bridge_contract.py", "bridge_records.py",
        "bridge_serving.py",
    ]  # fmt: skip


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
