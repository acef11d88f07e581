"""The app's entry: the QApplication, the manager's bridge, the window, the qasync loop.

The `vramdeck` command (vramdeck/cli.py) parses the options and calls `run`. Without ``--config``
it opens the config used last time (QSettings), else the shipped ``configs/demo.yaml``; a
``--config`` that cannot be read opens the window anyway, on the last good config or the demo,
with the error in the banner (started from the desktop entry, there is no terminal to read).
``VRAMDECK_QUIT_AFTER_S=N`` closes the window after N seconds through the normal close path
(smoke tests). torch is not imported before the window shows: the manager imports it when the
first model loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import qasync  # binds to PySide6: gui/__init__.py set QT_API before this import
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QFont, QIcon
from PySide6.QtWidgets import QApplication

from vramdeck.telemetry_setup import configure_from_env

from . import paths
from . import settings as saved
from .bridge import ManagerBridge, open_bridge, start_file_logging
from .gc_guard import GuiThreadCollector
from .main_window import MainWindow
from .qt_logging import route_qt_messages
from .session import AppSession, DemoModelMaker

logger = logging.getLogger(__name__)

QUIT_AFTER_ENV = "VRAMDECK_QUIT_AFTER_S"
TRACE_STARTUP_ENV = "VRAMDECK_TRACE_STARTUP"
#: Seconds of chart history to wait for after warm-up before a screenshot (default 8).
SCREENSHOT_SETTLE_ENV = "VRAMDECK_SCREENSHOT_SETTLE_S"


@dataclass(frozen=True)
class WindowOptions:
    """The window's options, as the `vramdeck` command parsed them."""

    config: str | None = None
    screenshot: Path | None = None


@dataclass(frozen=True)
class StartupProblem:
    """A config that could not be opened at start-up, and what was opened instead."""

    title: str
    detail: str

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}"


def run(
    options: WindowOptions, qt_args: list[str], *, demo_models: DemoModelMaker | None = None
) -> int:
    """Run the panel until its window is closed; the exit status. `qt_args` go to Qt (e.g.
    ``-platform offscreen``); `demo_models` makes the demo's models when the config uses them."""
    _configure_logging()
    route_qt_messages()
    stop_telemetry = configure_from_env()
    # The window shows each load's progress; tqdm bars on stderr would only repeat it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app = _application(qt_args)
    settings = saved.open_settings()
    try:
        opened = _open_bridge(options, settings)
        if isinstance(opened, int):
            return opened
        bridge, startup_error = opened
        return _run_loop(app, bridge, settings, options, startup_error, demo_models)
    finally:
        stop_telemetry()


def _configure_logging() -> None:
    level = os.environ.get("VRAMDECK_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)  # the terminal keeps its level when the file takes INFO
    try:
        start_file_logging()  # INFO and up, to the rotating file in the user's state folder
    except OSError as exc:
        logging.getLogger(__name__).warning("no log file: %s", exc)


def _application(qt_args: list[str]) -> QApplication:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("vramdeck")
    app.setOrganizationName("vramdeck")
    app.setApplicationDisplayName("vramdeck")
    app.setStyle("Fusion")
    font = QFont(app.font())
    font.setPointSizeF(max(font.pointSizeF(), 9.5))
    app.setFont(font)
    if (icon := paths.resource("icons/vramdeck.svg")) is not None:
        app.setWindowIcon(QIcon(str(icon)))
    if (style := paths.resource("vramdeck.qss")) is not None:
        app.setStyleSheet(style.read_text(encoding="utf-8"))
    return app


def _open_bridge(
    options: WindowOptions, settings: QSettings
) -> tuple[ManagerBridge, StartupProblem | None] | int:
    """The bridge for the config to open and, when that config cannot be read, one on the last
    good config (else the demo) with what went wrong; an exit status when nothing opens."""
    demo = paths.shipped_config("demo.yaml")
    remembered = saved.last_config(settings)
    wanted = Path(options.config) if options.config else remembered or demo
    if wanted is None:
        print("vramdeck: no config given and configs/demo.yaml not found; use --config PATH",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return open_bridge(wanted), None
    except ValueError as exc:  # ConfigError: file, line and key
        error = str(exc)
    print(f"vramdeck: {error}", file=sys.stderr)  # for a terminal, when there is one
    for fallback in (remembered, demo):
        if fallback is None or fallback.resolve() == wanted.resolve():
            continue
        try:
            bridge = open_bridge(fallback)
        except ValueError:  # a remembered config broken since; the demo comes next
            continue
        title = f"Could not open {wanted.name}; opened {fallback.name} instead"
        return bridge, StartupProblem(title, error)
    return 2


def _run_loop(
    app: QApplication,
    bridge: ManagerBridge,
    settings: QSettings,
    options: WindowOptions,
    startup_error: StartupProblem | None,
    demo_models: DemoModelMaker | None,
) -> int:
    # A screenshot is of the default layout, and leaves the person's settings alone.
    layout = None if options.screenshot else settings
    if layout is not None:
        saved.remember_config(layout, bridge.config_path)
    window = MainWindow(bridge, layout)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    session = AppSession(app, bridge, window, demo_models=demo_models)
    collector = GuiThreadCollector(app)
    collector.start()
    try:
        return loop.run_until_complete(_serve(session, options, startup_error))
    finally:
        settings.sync()
        loop.close()
        asyncio.set_event_loop(None)
        collector.stop()


async def _serve(
    session: AppSession, options: WindowOptions, startup_error: StartupProblem | None
) -> int:
    window = session.window
    window.show()
    window.build_chart_soon()
    if os.environ.get(TRACE_STARTUP_ENV):
        QTimer.singleShot(0, _trace_shown)
    if startup_error is not None:
        window.banner.show_error(startup_error.title, startup_error.detail)
    _close_on_signals(window)
    if (quit_after := os.environ.get(QUIT_AFTER_ENV)) is not None:
        session.quit_after(float(quit_after))
    await session.start()
    if options.screenshot:
        settle_s = float(os.environ.get(SCREENSHOT_SETTLE_ENV, "8"))
        session.spawn(session.screenshot(options.screenshot, settle_s=settle_s))
    return await session.serve()


def _trace_shown() -> None:
    """For bench/gui_latency.py and the tests: when the first window was on screen (wall
    clock), and whether torch had been imported by then (it must not have been)."""
    torch = "torch" in sys.modules
    print(f"vramdeck: window shown at {time.time():.6f} torch={torch}", file=sys.stderr, flush=True)


def _close_on_signals(window: MainWindow) -> None:
    """Ctrl+C and SIGTERM close the window the normal way, so models are unloaded."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread, or not here
            signal.signal(sig, lambda *_: QTimer.singleShot(0, window.close))


__all__ = ["StartupProblem", "WindowOptions", "run"]
