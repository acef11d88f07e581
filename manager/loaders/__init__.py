"""Loaders by framework: the built-in ones, and plug-ins from ``vramdeck.loaders`` entry points."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from vramdeck.manager.config import ModelConfig

from .base import AsyncLoader, InWorker, LoadContext, Loader, LoaderUnavailable, as_async
from .external_api import ExternalAPIConfig, ExternalAPILoader, MissingAPIKey
from .servers import (
    CommandValues,
    ServerHandle,
    ServerLoader,
    ServerStartError,
    SglangLoader,
    VllmLoader,
    live_server_pids,
    stop_all_servers,
)
from .transformers_loader import TransformersLoader

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vramdeck.loaders"


def builtin_loaders() -> list[Loader | AsyncLoader]:
    return [TransformersLoader(), ExternalAPILoader(), VllmLoader(), SglangLoader()]


def plugin_loaders() -> list[Loader | AsyncLoader]:
    """Loaders that installed packages offer through the ``vramdeck.loaders`` entry-point group."""
    found: list[Loader | AsyncLoader] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append(ep.load()())
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not stop the manager
            logger.warning("loader plug-in %s (%s) failed to load: %s", ep.name, ep.value, exc)
    return found


class LoaderRegistry:
    """framework name → loader; later loaders override earlier ones for the same framework."""

    def __init__(self, loaders: Iterable[Loader | AsyncLoader]) -> None:
        self._by_framework: dict[str, Loader | AsyncLoader] = {}
        for loader in loaders:
            for framework in loader.frameworks:
                self._by_framework[framework] = loader

    @classmethod
    def default(cls) -> LoaderRegistry:
        return cls([*builtin_loaders(), *plugin_loaders()])

    @property
    def frameworks(self) -> Mapping[str, Loader | AsyncLoader]:
        return self._by_framework

    def get(self, framework: str) -> Loader | AsyncLoader:
        loader = self._by_framework.get(framework)
        if loader is None:
            raise LoaderUnavailable(self._missing_reason(framework))
        return loader

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        """Why `option` cannot load here, or None."""
        loader = self._by_framework.get(option.framework)
        if loader is None:
            return self._missing_reason(option.framework)
        return loader.unavailable_reason(option)

    def _missing_reason(self, framework: str) -> str:
        known = ", ".join(sorted(self._by_framework))
        return (
            f"no loader for framework {framework!r} (known: {known}); install a package that "
            f"provides one in the {ENTRY_POINT_GROUP!r} entry-point group"
        )


__all__ = [
    "ENTRY_POINT_GROUP",
    "AsyncLoader",
    "CommandValues",
    "ExternalAPIConfig",
    "ExternalAPILoader",
    "InWorker",
    "LoadContext",
    "Loader",
    "LoaderRegistry",
    "LoaderUnavailable",
    "MissingAPIKey",
    "ServerHandle",
    "ServerLoader",
    "ServerStartError",
    "SglangLoader",
    "TransformersLoader",
    "VllmLoader",
    "as_async",
    "live_server_pids",
    "stop_all_servers",
]
