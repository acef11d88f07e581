"""The bridge's side of serving: the OpenAI-compatible endpoint the panel runs beside its
manager, the Try-it path, and the per-task request counts the table shows.

Part of the bridge (with bridge.py and bridge_records.py, the only gui modules that import the
manager and the serving package). One `Inference` runs both the endpoint's requests and Try-it's,
so Try-it goes through the endpoint's own code (admission, records, events) and shares its
workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from PySide6.QtCore import QObject, Signal

from vramdeck.manager import ModelManager
from vramdeck.serving.app import ServingApp
from vramdeck.serving.events import RequestFinished, RequestStarted
from vramdeck.serving.server import Endpoint
from vramdeck.serving.settings import ServeError, ServeSettings
from vramdeck.serving.try_it import try_it

from .records import RequestCounts

logger = logging.getLogger(__name__)

#: The port the panel's endpoint listens on instead of the config's (0: any free port; tests).
PANEL_PORT_ENV = "VRAMDECK_PANEL_PORT"


def panel_settings(manager: ModelManager) -> ServeSettings:
    """The config's ``inference.serving``, with the port from $VRAMDECK_PANEL_PORT if set."""
    raw = os.environ.get(PANEL_PORT_ENV, "").strip()
    port: int | None = None
    if raw:
        try:
            port = int(raw)
        except ValueError:
            raise ServeError(f"{PANEL_PORT_ENV}={raw!r}: expected a port number") from None
    return ServeSettings.from_config(
        manager.inference_config, file=str(manager.config_path), port=port
    )


class ServingControl(QObject):
    """Starts and stops the panel's endpoint; counts each task's requests from their events."""

    #: The endpoint's base URL now that it listens, or "" when it stopped (or never started).
    urlChanged = Signal(str)
    #: The endpoint could not start: why (a port in use names the port).
    failed = Signal(str)
    #: A task's request counts changed.
    countsChanged = Signal(str)

    def __init__(self, manager: ModelManager, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._manager = manager
        self._inference = manager.inference  # one per manager: its warm-ups use it too
        self._endpoint: Endpoint | None = None
        self._try_it: ServingApp | None = None
        self._counts: dict[str, RequestCounts] = {}
        self._latency: dict[str, float] = {}

    @property
    def url(self) -> str:
        return (self._endpoint.url or "") if self._endpoint is not None else ""

    @property
    def running(self) -> bool:
        return bool(self.url)

    def counts(self, task: str) -> RequestCounts:
        """Requests in flight, queued (waiting for the model), served, and the last latency."""
        seen = self._counts.get(task, RequestCounts())
        queued = 0
        for serving in (self._endpoint.serving if self._endpoint else None, self._try_it):
            if serving is not None and task in serving.admission.counts:
                queued += serving.admission.counts[task].queued
        return RequestCounts(seen.in_flight, queued, seen.served, seen.last_latency_s)

    def on_event(self, event: Any) -> None:
        """Called by the bridge with every manager event (RequestStarted/Finished count)."""
        if isinstance(event, RequestStarted):
            now = self._counts.get(event.task, RequestCounts())
            self._counts[event.task] = RequestCounts(
                now.in_flight + 1, 0, now.served, now.last_latency_s
            )
            self.countsChanged.emit(event.task)
        elif isinstance(event, RequestFinished):
            now = self._counts.get(event.task, RequestCounts())
            self._counts[event.task] = RequestCounts(
                max(now.in_flight - 1, 0), 0, now.served + 1, event.duration_s
            )
            self.countsChanged.emit(event.task)

    async def start(self) -> str | None:
        """Listen (a port in use is reported through `failed`, not raised); the URL or None."""
        if self._endpoint is not None and self._endpoint.url:
            return self._endpoint.url
        try:
            endpoint = Endpoint(self._manager, panel_settings(self._manager), self._inference)
            url = await endpoint.start()
        except (ServeError, ValueError) as exc:
            self.failed.emit(str(exc))
            return None
        self._endpoint = endpoint
        self.urlChanged.emit(url)
        return url

    async def stop(self) -> None:
        """Stop listening; requests in flight end first (up to the drain timeout)."""
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            await endpoint.stop()
            self.urlChanged.emit("")

    def try_it(self, task: str, text: str) -> AsyncIterator[Any]:
        """Run `text` on `task` as the endpoint would (pieces of text, then a TryItDone)."""
        if self._try_it is None:
            self._try_it = ServingApp(
                self._manager, ServeSettings.from_config(self._manager.inference_config),
                self._inference,
            )  # fmt: skip
        return try_it(self._try_it, task, text)

    async def close(self) -> None:
        """Stop the endpoint and release the inference workers (at the panel's shutdown)."""
        await self.stop()
        if self._try_it is not None:
            self._try_it.admission.close()
            self._try_it = None
        await self._inference.close()


__all__ = ["PANEL_PORT_ENV", "ServingControl", "panel_settings"]
