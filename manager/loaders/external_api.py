"""External APIs (framework ``external_api``): no local memory, only a key in the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vramdeck.manager.config import ModelConfig

from .base import LoadContext

DEFAULT_ENDPOINTS = {
    "anthropic": "https://api.anthropic.com/v1",
    "openai": "https://api.openai.com/v1",
    "google": "https://generativelanguage.googleapis.com/v1beta",
}


class MissingAPIKey(ValueError):
    """The option needs an API key and its environment variable is not set."""


@dataclass(frozen=True)
class ExternalAPIConfig:
    """What a client needs to call an external model. The key is read from the environment on
    demand and never stored in this object, so no repr, log or event can show it."""

    provider: str | None
    model_id: str
    endpoint: str | None
    api_key_env: str | None
    requires_api_key: bool
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def has_key(self) -> bool:
        """Whether the key's environment variable is set and not empty."""
        return bool(self.api_key_env and os.environ.get(self.api_key_env))

    @property
    def api_key(self) -> str | None:
        """The key itself, read now from the environment; never log or display it."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def __repr__(self) -> str:
        key = "set (masked)" if self.has_key else "missing"
        return (
            f"ExternalAPIConfig(provider={self.provider!r}, model_id={self.model_id!r}, "
            f"endpoint={self.endpoint!r}, api_key_env={self.api_key_env!r}, key={key})"
        )

    __str__ = __repr__


def external_api_config(option: ModelConfig) -> ExternalAPIConfig:
    """The client configuration for an external option (no check that the key is present)."""
    endpoint = option.api_endpoint or DEFAULT_ENDPOINTS.get((option.provider or "").lower())
    return ExternalAPIConfig(
        provider=option.provider,
        model_id=option.model_id,
        endpoint=endpoint,
        api_key_env=option.api_key_env,
        requires_api_key=option.requires_api_key,
    )


class ExternalAPILoader:
    """ "Loading" an external model checks the key and returns its client configuration."""

    frameworks: ClassVar[tuple[str, ...]] = ("external_api",)
    holds_device_memory: ClassVar[bool] = False

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        return None

    def load(self, option: ModelConfig, ctx: LoadContext) -> ExternalAPIConfig:
        config = external_api_config(option)
        if option.requires_api_key and not config.has_key:
            raise MissingAPIKey(
                f"{option.model_id} needs an API key: set the environment variable "
                f"{config.api_key_env or '<PROVIDER>_API_KEY'}"
            )
        return config

    def footprint(self, model: Any, device: str) -> int:
        return 0

    def unload(self, model: Any, device: str) -> None:
        pass

    def check(self, model: Any) -> None:
        return None


__all__ = ["ExternalAPIConfig", "ExternalAPILoader", "MissingAPIKey", "external_api_config"]
