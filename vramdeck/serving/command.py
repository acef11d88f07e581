"""``vramdeck serve [CONFIG] [--host H] [--port P]``: the manager and the endpoint, headless.

No Qt is imported. SIGTERM and Ctrl+C stop it cleanly: it stops listening, lets requests in
flight end (up to ``inference.serving.drain_timeout_s``), unloads the models, stops the managed
servers and exits 0. Exit 2 when the config cannot be used or the endpoint cannot listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

logger = logging.getLogger("vramdeck.serve")

#: Where CONFIG comes from when the command line gives none.
CONFIG_ENV = "VRAMDECK_CONFIG"
EXIT_OK, EXIT_BAD_CONFIG = 0, 2


def add_serve_parser(commands: Any) -> None:
    """Add ``serve`` to the CLI's subparsers (`commands`, from ``add_subparsers``)."""
    from .settings import API_KEY_ENV, DEFAULT_PORT

    serve = commands.add_parser(
        "serve",
        prog="vramdeck serve",
        help="serve the models over an OpenAI-compatible HTTP API, with no window",
        description="Run the manager and its OpenAI-compatible endpoint (GET /v1/models, POST "
        "/v1/chat/completions, /v1/completions, /v1/embeddings) with no window. A request's "
        "model is a task name; the task's selected option answers, loaded on first use. "
        f"Listens on 127.0.0.1:{DEFAULT_PORT} unless --host/--port or inference.serving say "
        f"otherwise; another address needs {API_KEY_ENV} (a bearer token). SIGTERM or Ctrl+C "
        "stops it cleanly (exit 0).",
    )
    serve.add_argument(
        "config",
        metavar="CONFIG",
        nargs="?",
        help=f"the models.yaml to serve (default: ${CONFIG_ENV})",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to listen on, 0 for any free one (default {DEFAULT_PORT})",
    )


def run_serve(config: str | None, *, host: str | None = None, port: int | None = None) -> int:
    """Serve until SIGTERM or Ctrl+C; returns the exit code."""
    config = config or os.environ.get(CONFIG_ENV)
    if not config:
        print(f"vramdeck serve: error: give CONFIG or set {CONFIG_ENV}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from vramdeck.telemetry_setup import configure_from_env  # Qt-free: the SDK from OTEL_*

    stop_telemetry = configure_from_env()
    try:
        return asyncio.run(_serve(config, host, port))
    finally:
        stop_telemetry()


async def _serve(config: str, host: str | None, port: int | None) -> int:
    from vramdeck.manager.model_manager import ModelManager

    from .server import Endpoint
    from .settings import API_KEY_ENV, ServeError, ServeSettings

    manager = ModelManager(config)
    try:
        settings = ServeSettings.from_config(
            manager.inference_config, file=str(manager.config_path), host=host, port=port
        )
        endpoint = Endpoint(manager, settings)
        url = await endpoint.start()
    except (ServeError, ValueError) as exc:
        print(f"vramdeck serve: error: {exc}", file=sys.stderr)
        await manager.shutdown()
        return EXIT_BAD_CONFIG
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    guard = (
        f"requests need the bearer token in {API_KEY_ENV}"
        if endpoint.guarded
        else "loopback only, no token"
    )
    print(
        f"vramdeck serve: listening on {url} ({guard}); tasks: {', '.join(manager.tasks)}",
        flush=True,
    )
    warming = asyncio.ensure_future(_warm_up(manager, endpoint))
    try:
        await stop.wait()
    finally:
        print("vramdeck serve: stopping: requests in flight end, models unload", flush=True)
        warming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warming
        await endpoint.stop()
        await manager.shutdown()
    return EXIT_OK


async def _warm_up(manager: Any, endpoint: Any) -> None:
    """With warmup_on_startup: load every selected model and run one small inference on it."""
    if not manager.inference_config.warmup_on_startup:
        return
    for task, config in manager.tasks.items():
        if config.get_selected_config().unavailable_reason:
            continue
        try:
            latency = await endpoint.inference.warm_up(task)
        except (ValueError, RuntimeError) as exc:
            logger.warning("warm-up of %s failed: %s", task, exc)
            continue
        if latency is not None:
            logger.info("%s warmed up: first inference took %.3f s", task, latency)


__all__ = ["CONFIG_ENV", "add_serve_parser", "run_serve"]
