"""`Endpoint`: the HTTP server on the running loop (aiohttp's AppRunner and TCPSite), so it
shares the manager's loop: the qasync loop in the panel, asyncio's in ``vramdeck serve``."""

from __future__ import annotations

import errno
import logging

from aiohttp import web

from vramdeck.manager.inference import Inference
from vramdeck.manager.model_manager import ModelManager

from .app import ServingApp
from .settings import API_KEY_ENV, ServeError, ServeSettings

logger = logging.getLogger(__name__)


class Endpoint:
    """vramdeck's OpenAI-compatible endpoint for one manager.

    Parameters
    ----------
    manager : ModelManager
        The manager whose tasks it serves.
    settings : ServeSettings
        Where it listens and what it accepts.
    inference : Inference, optional
        The inference runner to share (the panel's Try-it uses the same); one is made if not.
    """

    def __init__(
        self,
        manager: ModelManager,
        settings: ServeSettings | None = None,
        inference: Inference | None = None,
    ) -> None:
        self.manager = manager
        self.settings = settings or ServeSettings.from_config(manager.inference_config)
        self._owns_inference = inference is None
        self.inference = inference or Inference(manager)
        self.serving = ServingApp(manager, self.settings, self.inference)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    @property
    def guarded(self) -> bool:
        """Whether requests need the bearer token."""
        return self.settings.api_key() is not None

    async def start(self) -> str:
        """Listen; returns the base URL (``http://127.0.0.1:8765/v1``). ServeError when the
        port is in use or a non-loopback host has no token."""
        self.settings.check_exposure()
        runner = web.AppRunner(
            self.serving.application(),
            handle_signals=False,
            # aiohttp reads a timeout of 0 as "wait for ever": 0 means "cut at once" here.
            shutdown_timeout=max(self.settings.drain_timeout_s, 0.001),
        )
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{self.settings.host}:{self.settings.port}"
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(
                    f"port {self.settings.port} is in use ({where}); stop what listens there "
                    "or choose another with --port or inference.serving.port"
                ) from None
            raise ServeError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        self._runner = runner
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"http://{shown}:{port}/v1"
        guard = f"bearer token from {API_KEY_ENV} required" if self.guarded else "no token"
        logger.info("serving the models at %s (%s)", self.url, guard)
        return self.url

    @property
    def port(self) -> int | None:
        if self._runner is None or not self._runner.addresses:
            return None
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening, let requests in flight end (up to drain_timeout_s, then cancel
        them), and release the inference workers. The manager is the caller's to shut down."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._owns_inference:
            await self.inference.close()
        self.url = None


__all__ = ["Endpoint"]
