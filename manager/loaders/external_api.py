"""External APIs (framework ``external_api``): no local memory, only a key in the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vramdeck.manager.config import ModelConfig

from .base import AsyncLoader, LoadContext

DEFAULT_ENDPOINTS = {
    "anthropic": "https://api.anthropic.com/v1",
    "openai": "https://api.openai.com/v1",
    "google": "https://generativelanguage.googleapis.com/v1beta",
}


class MissingAPIKey(ValueError):
    """The option needs an API key and its environment variable is not set."""


#: The seed's client defaults.
DEFAULT_TIMEOUT_S = 30
DEFAULT_MAX_RETRIES = 3


@dataclass(frozen=True)
class ExternalAPIConfig:
    """What a client needs to call an external model (the seed's fields: provider, model_id,
    api_endpoint, api_key, timeout, max_retries). The key is read from the environment on
    demand and never stored in this object, so no repr, log or event can show it."""

    provider: str | None
    model_id: str
    endpoint: str | None
    api_key_env: str | None
    requires_api_key: bool
    timeout: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def api_endpoint(self) -> str | None:
        """The seed's name for `endpoint`."""
        return self.endpoint

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
            f"endpoint={self.endpoint!r}, api_key_env={self.api_key_env!r}, key={key}, "
            f"timeout={self.timeout:g}, max_retries={self.max_retries})"
        )

    __str__ = __repr__


def external_api_config(option: ModelConfig, *, require_key: bool = False) -> ExternalAPIConfig:
    """The client configuration for an external option. With `require_key`, an option that
    requires a key whose variable is unset or empty raises MissingAPIKey (the seed's words)."""
    endpoint = option.api_endpoint or DEFAULT_ENDPOINTS.get((option.provider or "").lower())
    config = ExternalAPIConfig(
        provider=option.provider,
        model_id=option.model_id,
        endpoint=endpoint,
        api_key_env=option.api_key_env,
        requires_api_key=option.requires_api_key,
    )
    if require_key and option.requires_api_key and not config.has_key:
        variable = config.api_key_env or "<PROVIDER>_API_KEY"
        raise MissingAPIKey(f"Missing API key: {variable} environment variable not set")
    return config


class ExternalAPILoader(AsyncLoader):
    """ "Loading" an external model checks the key and returns its client configuration."""

    frameworks: ClassVar[tuple[str, ...]] = ("external_api",)
    holds_device_memory: ClassVar[bool] = False

    async def load(self, option: ModelConfig, ctx: LoadContext) -> ExternalAPIConfig:
        config = external_api_config(option)
        if option.requires_api_key and not config.has_key:
            raise MissingAPIKey(
                f"{option.model_id} needs an API key: set the environment variable "
                f"{config.api_key_env or '<PROVIDER>_API_KEY'}"
            )
        return config

    def footprint(self, model: Any, device: str) -> int:
        return 0


__all__ = ["ExternalAPIConfig", "ExternalAPILoader", "MissingAPIKey", "external_api_config"]
