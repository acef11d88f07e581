"""One run of the panel on the event loop: start-up work, the close path, the screenshot.

Closing follows ARCHITECTURE.md: the app does not quit on the last window; the window's first
close asks for a shutdown, the manager unloads everything (the status bar shows each model go),
then the window closes for real, ``lastWindowClosed`` fires, and `serve` returns before the loop
stops, so nothing is left to await after ``aboutToQuit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from . import preload
from .bridge import ManagerBridge
from .gc_guard import collection_paused
from .main_window import MainWindow

logger = logging.getLogger(__name__)

#: How long the close path waits for the manager before closing anyway.
SHUTDOWN_TIMEOUT_S = 120.0
#: How long the preload waits for the chart to be built (pyqtgraph imported) before torch.
CHART_FIRST_S = 3.0


class DemoModelMaker(Protocol):
    """What makes the demo config's models (`vramdeck.manager.demo_models`, which the `vramdeck`
    command passes in: only the bridge imports the manager here)."""

    def folder_to_make(self, model_ids: Iterable[str]) -> Path | None: ...

    def ensure_demo_models(
        self, folder: Path | None = None, progress: Callable[[str], None] | None = None
    ) -> Path: ...


class AppSession:
    """Runs `window` over `bridge` until the window is closed, then shuts the manager down."""

    def __init__(
        self,
        app: QApplication,
        bridge: ManagerBridge,
        window: MainWindow,
        *,
        demo_models: DemoModelMaker | None = None,
    ) -> None:
        self.app = app
        self.bridge = bridge
        self.window = window
        self.demo_models = demo_models
        self.exit_code = 0
        self.shutdown_ran = False
        self.warmup: asyncio.Task[Any] | None = None
        self.preload: asyncio.Task[Any] | None = None
        #: Done when loads may start: the preload, the demo models and the architectures.
        self.ready: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._disposed = False
        self._frozen_after_load = False
        app.setQuitOnLastWindowClosed(False)
        app.lastWindowClosed.connect(self._closed.set)
        window.closeRequested.connect(self.request_close)
        bridge.eventLogged.connect(self._freeze_after_first_load)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(
        self, *, sample_interval_s: float = 0.1, warm_up: bool = True, preload: bool = True
    ) -> None:
        """Detect devices, start sampling, import torch and transformers ahead of the first load
        (`preload`), make the demo models if the config uses them, and warm up if the config
        says so. Returns once sampling runs; the rest goes on behind."""
        await self.bridge.start(sample_interval_s)
        await self.window.serving.start_if_wanted()
        if self.bridge.loads_in_process() and preload:
            self.preload = self.spawn(self._preload_frameworks())
        # Loads wait for the imports and the demo models: two threads importing transformers
        # at once can see its lazy module half made ("no attribute 'AutoConfig'").
        self.ready = self.spawn(self._before_loads())
        self.bridge.set_prerequisite(self.ready)
        if warm_up:
            self.warmup = self.spawn(self.bridge.warm_up(force=False))

    async def serve(self) -> int:
        """Wait until the window has closed (and the manager shut down); the exit status."""
        await self._closed.wait()
        await self.shutdown()
        self.dispose()
        return self.exit_code

    def dispose(self) -> None:
        """Let go of the application's signal (the QApplication outlives a session in tests)."""
        if not self._disposed:
            self._disposed = True
            with contextlib.suppress(RuntimeError, TypeError):
                self.app.lastWindowClosed.disconnect(self._closed.set)

    def request_close(self) -> None:
        """The window asked to close: shut the manager down, then close it for real."""
        if self._closing is None:
            self._closing = self.spawn(self._close())

    async def _close(self) -> None:
        await self.shutdown()
        self.window.close_now()

    async def shutdown(self) -> None:
        """Unload everything and stop the manager (once; later calls wait for the first)."""
        if self.shutdown_ran:
            return
        self.shutdown_ran = True
        try:
            await asyncio.wait_for(self.bridge.shutdown(), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            logger.error("the manager did not shut down in %.0f s; closing anyway",
                         SHUTDOWN_TIMEOUT_S)  # fmt: skip
            self.exit_code = self.exit_code or 1
        for task in list(self._tasks):
            if task is not asyncio.current_task() and task is not self._closing:
                task.cancel()

    def quit_after(self, seconds: float) -> None:
        """Close through the normal path after `seconds` (VRAMDECK_QUIT_AFTER_S)."""
        QTimer.singleShot(int(seconds * 1000), self.window.close)

    async def screenshot(
        self, path: Path, *, settle_s: float = 8.0, timeout_s: float = 240
    ) -> None:
        """Once warm-up is over and the chart has some history, save the window as PNG and close."""
        started = time.monotonic()
        if self.warmup is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.warmup), timeout_s)
        await asyncio.sleep(max(0.0, min(settle_s, timeout_s - (time.monotonic() - started))))
        self.window.flush()
        self.window.chart.redraw()
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.window.grab().save(str(path), "PNG"):
            print(f"vramdeck: saved a screenshot to {path}", file=sys.stderr)
        else:
            print(f"vramdeck: could not save a screenshot to {path}", file=sys.stderr)
            self.exit_code = 1
        self.window.close()

    async def _before_loads(self) -> None:
        if self.preload is not None:
            await asyncio.shield(self.preload)
        maker = self.demo_models
        folder = maker.folder_to_make(self.bridge.model_ids()) if maker is not None else None
        if maker is not None and folder is not None:
            await self._make_demo_models(maker, folder)
        if self.preload is not None and "transformers" in sys.modules:
            await self._preload_architectures()

    def _freeze_after_first_load(self, entry: Any) -> None:
        """The first load imports transformers' model code (another ~100k objects): freeze
        those too, so that later full collections, which hold the GIL, stay short."""
        if entry.kind == "ModelLoaded" and entry.device and not self._frozen_after_load:
            self._frozen_after_load = True
            gc.freeze()

    async def _preload_frameworks(self) -> None:
        """Import torch and transformers now, while the person looks at the window, instead of
        in the first load, with garbage collection paused; then freeze the heap: their million
        objects need never be scanned again (a full collection would hold the GIL ~0.2 s).

        The chart is built first: pyqtgraph imported on the GUI thread while torch imports in
        another stalled the window 300-460 ms."""
        await self._chart_first()
        try:
            with collection_paused():
                await _in_daemon_thread(preload.import_frameworks)
        except ImportError as exc:
            logger.info("not preloading: %s", exc)  # the loads will say what is missing
            return
        gc.freeze()

    async def _chart_first(self) -> None:
        slot = self.window.chart_slot
        if slot.built:
            return
        built = asyncio.Event()
        slot.chartBuilt.connect(built.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(built.wait(), CHART_FIRST_S)
        slot.chartBuilt.disconnect(built.set)

    async def _preload_architectures(self) -> None:
        """The rest of a first load's one-off work (see `preload`), once the models exist."""
        sources = preload.model_sources(self.bridge.task_rows())
        if not sources:
            return
        with collection_paused():
            done = await _in_daemon_thread(preload.import_architectures, sources)
        logger.info("preloaded the code of %s", ", ".join(done) or "no architecture")
        gc.freeze()

    async def _make_demo_models(self, maker: DemoModelMaker, folder: Path) -> None:
        status = self.window.status
        status.show_progress("Making the demo models (first run only)…")
        loop = asyncio.get_running_loop()

        def progress(message: str) -> None:  # called in the worker thread
            text = f"Making the demo models: {message}…"
            _call_soon_threadsafe(loop, status.show_progress, text)

        try:
            await _in_daemon_thread(maker.ensure_demo_models, folder, progress)
        except Exception as exc:  # noqa: BLE001 - any failure goes to the banner; the panel stays
            logger.warning("could not make the demo models: %s", exc)
            self.window.banner.show_error("Could not make the demo models", str(exc))
            status.end_progress()
            return
        status.end_progress(f"Demo models ready in {folder}")


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """Hand `fn` to the loop's thread; nothing happens once the loop is closed (quitting)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


async def _in_daemon_thread(fn: Any, *args: Any) -> Any:
    """Run blocking `fn` in a daemon thread: quitting never waits for it (a half-made folder is
    a temporary one, cleaned up on the next run)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(setter: Any, value: Any) -> None:
        if not future.done():
            setter(value)

    def work() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, re-raised
            _call_soon_threadsafe(loop, settle, future.set_exception, exc)
        else:
            _call_soon_threadsafe(loop, settle, future.set_result, result)

    threading.Thread(target=work, name="vramdeck-demo-models", daemon=True).start()
    return await future


__all__ = ["SHUTDOWN_TIMEOUT_S", "AppSession", "DemoModelMaker"]
