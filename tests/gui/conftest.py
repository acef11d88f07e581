"""GUI test settings: headless Qt, Qt warnings and log warnings fail a test, no leaked widgets.

Also: a qasync loop per test (the app's loop), tiny real GPT-2 models made once per session,
and a panel fixture (manager → bridge → window → session) over a config that uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import qasync
import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication

from tests.gui.helpers import Panel, run
from vramdeck.gui.qt_logging import HARMLESS

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_log(pattern): a log record at WARNING or above matching it may happen"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.qt_log_level_fail("WARNING"))
            item.add_marker(pytest.mark.qt_log_ignore(*(re.escape(m) for m in HARMLESS)))


# ----------------------------------------------------------------- failures that are not asserts


def _pointer(widget: Any) -> int:
    return int(shiboken6.getCppPointer(widget)[0])


@pytest.fixture(autouse=True)
def no_leaked_widgets(qapp: QApplication) -> Iterator[None]:
    """Every top-level widget a test makes is gone (closed and deleted) when it ends.

    Garbage is collected here, on the GUI thread, before and after: left for later, Python may
    collect a test's Qt objects in a model-loading worker thread (the manager's unload calls
    gc.collect() there), destroying them off the GUI thread.
    """
    gc.collect()
    before = {_pointer(w) for w in QApplication.topLevelWidgets()}
    yield
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()
    leaked = [
        f"{type(w).__name__}({w.objectName()!r})"
        for w in QApplication.topLevelWidgets()
        if _pointer(w) not in before and type(w).__name__ != "QTipLabel"
    ]
    assert not leaked, f"top-level widgets left behind: {leaked}"


@pytest.fixture(autouse=True)
def collection_on_the_gui_thread(qapp: QApplication) -> Iterator[None]:
    """As the app runs (gui/app.py): automatic collection off, collections on a GUI-thread
    timer, so that no worker thread finalizes a test's Qt objects."""
    from vramdeck.gui.gc_guard import GuiThreadCollector

    collector = GuiThreadCollector()
    collector.start()
    yield
    collector.stop()
    collector.deleteLater()


@pytest.fixture(autouse=True)
def no_warnings_logged(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """A log record at WARNING or above fails the test unless an allow_log marker expects it."""
    caplog.set_level(logging.INFO)
    yield
    allowed = [re.compile(m.args[0]) for m in request.node.iter_markers("allow_log")]
    bad = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.get_records("call") + caplog.get_records("teardown")
        if r.levelno >= logging.WARNING and not any(p.search(r.getMessage()) for p in allowed)
    ]
    assert not bad, f"unexpected log records: {bad}"


@pytest.fixture(autouse=True)
def endpoint_on_any_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel's OpenAI endpoint listens on a free port, never the default 8765."""
    monkeypatch.setenv("VRAMDECK_PANEL_PORT", "0")


# ----------------------------------------------------------------- the event loop


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """The app's kind of loop, asyncio on the Qt event loop, running for the whole test: every
    Qt event processing (qtbot's waits, `run`) runs asyncio callbacks, as in the app."""
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            run(loop, asyncio.gather(*pending, return_exceptions=True), timeout=10)
    finally:
        # Closed even when a failed test left work that would not end: an open loop's worker
        # threads would later call into it from the next test's Qt events (a crash, not a
        # failure). Closing shuts its default executor down.
        # Not loop.stop(): it calls QApplication.exit(), which makes every later
        # QEventLoop.exec() (qtbot's waits in the next tests) return at once. Mark it stopped.
        loop._QEventLoop__is_running = False
        asyncio.events._set_running_loop(None)
        with contextlib.suppress(RuntimeError, TypeError):
            qapp.aboutToQuit.disconnect(loop._after_run_forever)
        loop.close()
        asyncio.set_event_loop(None)


# ----------------------------------------------------------------- tiny real models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny GPT-2 models saved as safetensors: a ≈ 0.5 MiB, b ≈ 1.8 MiB, c ≈ 0.5 MiB."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("tiny-models")
    widths = {"tiny-a": 64, "tiny-b": 128, "tiny-c": 64}
    paths: dict[str, Path] = {}
    for seed, (name, width) in enumerate(widths.items()):
        torch.manual_seed(seed)
        config = GPT2Config(n_layer=2, n_embd=width, n_head=2, vocab_size=500, n_positions=64,
                            bos_token_id=0, eos_token_id=0)  # fmt: skip
        GPT2LMHeadModel(config).save_pretrained(root / name)
        paths[name] = root / name
    # torch and transformers are imported now: keep their many objects out of the collections
    # that every test runs (0.2 s each otherwise).
    gc.collect()
    gc.freeze()
    return paths


GUI_CONFIG = """\
inference:
  memory_budget_gb: 0.0025   # 2.6 MiB: a + b fit, a third model evicts the least recently used
  evict_verify_timeout_s: 0.2
models:
  alpha:
    description: First task
    selected: small
    options:
      small: {{model_id: "{a}", vram_gb: 0.0005, speed: fast}}
      large: {{model_id: "{b}", vram_gb: 0.0018, speed: slow}}
      broken: {{model_id: "{missing}", vram_gb: 0.0005, description: not on disk}}
      served: {{model_id: org/some-model, framework: vllm, vram_gb: 1}}
  beta:
    selected: large
    options:
      large: {{model_id: "{b}", vram_gb: 0.0018}}
  gamma:
    selected: small
    options:
      small: {{model_id: "{c}", vram_gb: 0.0005}}
  remote:
    selected: api
    options:
      api: {{model_id: chat, framework: external_api, provider: openai, requires_api_key: false}}
"""


@pytest.fixture
def gui_config(tmp_path: Path, tiny_models: dict[str, Path]) -> Path:
    path = tmp_path / "models.yaml"
    text = GUI_CONFIG.format(a=tiny_models["tiny-a"], b=tiny_models["tiny-b"],
                             c=tiny_models["tiny-c"], missing=tmp_path / "missing")  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def make_panel(
    qapp: QApplication, qtbot: Any, qloop: qasync.QEventLoop, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Panel]]:
    """Build a panel over a config (real loaders unless `manager` is given)."""
    from vramdeck.gui.bridge import ManagerBridge
    from vramdeck.gui.main_window import MainWindow
    from vramdeck.gui.session import AppSession
    from vramdeck.gui.unsaved import UnsavedChoice
    from vramdeck.manager import Ledger, ModelManager

    made: list[Panel] = []

    def make(config: Path | None = None, *, manager: Any = None, start: bool = True) -> Panel:
        if manager is None:
            assert config is not None, "make_panel needs a config or a manager"
            manager = ModelManager(config, ledger=Ledger(None))
        bridge = ManagerBridge(manager)
        window = MainWindow(bridge, settings=None, chart_fps=20)
        # qtbot closes its widgets before this fixture's teardown: a modal question about
        # unsaved selections would wait forever there. Tests of the question replace this.
        monkeypatch.setattr(window, "ask_unsaved", lambda: UnsavedChoice.DISCARD)
        # No modal box in tests: "warm up only what fits?" answers No (warm up all, evicting),
        # unless a test sets its own answer.
        window.prompts.ask = lambda title, question: False
        qtbot.addWidget(window)
        session = AppSession(qapp, bridge, window)
        window.show()
        panel = Panel(qloop, manager, bridge, window, session)
        made.append(panel)
        if start:
            panel.run(session.start(sample_interval_s=0.05, warm_up=False, preload=False))
        return panel

    yield make
    with contextlib.ExitStack() as cleanups:  # every panel cleaned up, even after a failure
        for panel in made:
            cleanups.callback(panel.bridge.deleteLater)  # destroyed here, on the GUI thread
            cleanups.callback(panel.window.close_now)
            cleanups.callback(panel.session.dispose)
            if not panel.session.shutdown_ran:
                cleanups.callback(panel.run, panel.session.shutdown())


@pytest.fixture
def panel(make_panel: Callable[..., Panel], gui_config: Path) -> Panel:
    """A started panel over the tiny models' config."""
    return make_panel(gui_config)
