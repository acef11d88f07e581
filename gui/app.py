"""The app's entry: options, the QApplication, the manager's bridge, the window, the qasync loop.

``vramdeck [--config PATH] [--screenshot FILE]``. Without ``--config`` it opens the config used
last time (QSettings), else the shipped ``configs/demo.yaml``. ``VRAMDECK_QUIT_AFTER_S=N`` closes
the window after N seconds through the normal close path (smoke tests). torch is not imported
before the window shows: the manager imports it when the first model loads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

import qasync  # binds to PySide6: gui/__init__.py set QT_API before this import
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QFont, QIcon
from PySide6.QtWidgets import QApplication

from . import demo_models, paths
from . import settings as saved
from .bridge import ManagerBridge, open_bridge, start_file_logging
from .gc_guard import GuiThreadCollector
from .main_window import MainWindow
from .qt_logging import route_qt_messages
from .session import AppSession
from .telemetry_setup import configure_from_env

logger = logging.getLogger(__name__)

QUIT_AFTER_ENV = "VRAMDECK_QUIT_AFTER_S"
TRACE_STARTUP_ENV = "VRAMDECK_TRACE_STARTUP"
#: Seconds of chart history to wait for after warm-up before a screenshot (default 8).
SCREENSHOT_SETTLE_ENV = "VRAMDECK_SCREENSHOT_SETTLE_S"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """vramdeck's options, and the rest for Qt (e.g. ``-platform offscreen``)."""
    parser = argparse.ArgumentParser(
        prog="vramdeck",
        description="A control panel for the AI models on a GPU workstation.",
    )
    parser.add_argument(
        "--config", metavar="PATH",
        help="models.yaml to open (default: the last one opened, else the demo)",
    )  # fmt: skip
    parser.add_argument(
        "--screenshot", metavar="FILE", type=Path,
        help="save a PNG of the window once the models have warmed up, then quit",
    )  # fmt: skip
    return parser.parse_known_args(argv)


def run(argv: list[str]) -> int:
    """Run the panel until its window is closed; the exit status."""
    options, qt_args = parse_args(argv)
    _configure_logging()
    route_qt_messages()
    stop_telemetry = configure_from_env()
    demo_models.export_env()
    # The window shows each load's progress; tqdm bars on stderr would only repeat it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app = _application(qt_args)
    settings = saved.open_settings()
    try:
        opened = _open_bridge(options, settings)
        if isinstance(opened, int):
            return opened
        bridge, startup_error = opened
        return _run_loop(app, bridge, settings, options, startup_error)
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
    options: argparse.Namespace, settings: QSettings
) -> tuple[ManagerBridge, str | None] | int:
    """The bridge for the config to open, and an error to show when the remembered config could
    not be read and the demo was opened instead; an exit status when there is nothing to open."""
    demo = paths.shipped_config("demo.yaml")
    if options.config:
        try:
            return open_bridge(options.config), None
        except ValueError as exc:  # ConfigError: file, line and key
            print(f"vramdeck: {exc}", file=sys.stderr)
            return 2
    wanted = saved.last_config(settings) or demo
    if wanted is None:
        print("vramdeck: no config given and configs/demo.yaml not found; use --config PATH",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return open_bridge(wanted), None
    except ValueError as exc:
        if demo is None or wanted.resolve() == demo.resolve():
            print(f"vramdeck: {exc}", file=sys.stderr)
            return 2
        return open_bridge(demo), f"{exc}"


def _run_loop(
    app: QApplication,
    bridge: ManagerBridge,
    settings: QSettings,
    options: argparse.Namespace,
    startup_error: str | None,
) -> int:
    # A screenshot is of the default layout, and leaves the person's settings alone.
    layout = None if options.screenshot else settings
    if layout is not None:
        saved.remember_config(layout, bridge.config_path)
    window = MainWindow(bridge, layout)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    session = AppSession(app, bridge, window)
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
    session: AppSession, options: argparse.Namespace, startup_error: str | None
) -> int:
    window = session.window
    window.show()
    window.build_chart_soon()
    if os.environ.get(TRACE_STARTUP_ENV):
        QTimer.singleShot(0, _trace_shown)
    if startup_error:
        window.banner.show_error("Could not open the last config; opened the demo instead",
                                 startup_error)  # fmt: skip
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


__all__ = ["parse_args", "run"]
