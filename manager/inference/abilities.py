"""What a task's model can do: decided from its option (before loading) or from the model itself.

The HTTP endpoint uses this to refuse a request the model cannot answer (embeddings from a chat
model) with a message that says what it can do, and to list tasks that it cannot serve at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from vramdeck.manager.config import ModelConfig

#: Server frameworks whose processes speak OpenAI's API (requests are proxied to them).
SERVER_FRAMEWORKS = ("vllm", "sglang")
#: External providers with an OpenAI-compatible endpoint (Anthropic's is at /v1 too).
OPENAI_COMPATIBLE_PROVIDERS = ("openai", "anthropic")


class ModelKind(StrEnum):
    """How a task's model is reached and what family it belongs to."""

    CAUSAL_LM = "causal_lm"  # transformers, generates text in-process
    ENCODER = "encoder"  # transformers base encoder: sentence embeddings
    CLASSIFIER = "classifier"  # transformers sequence classification: no OpenAI route
    SERVER = "server"  # a managed vLLM/SGLang process: proxied
    EXTERNAL_API = "external_api"  # an OpenAI-compatible external API: proxied with its key
    OTHER = "other"


class Ability(StrEnum):
    """An OpenAI route a model can answer."""

    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


@dataclass(frozen=True)
class Abilities:
    """A model's kind, the routes it answers, and why it answers none when it does not."""

    kind: ModelKind
    abilities: frozenset[Ability]
    reason: str | None = None

    @property
    def servable(self) -> bool:
        return bool(self.abilities)

    def describe(self) -> str:
        """For error messages: ``chat, completion`` or the reason it serves nothing."""
        if not self.abilities:
            return self.reason or "nothing"
        return ", ".join(sorted(a.value for a in self.abilities))


_GENERATES = frozenset({Ability.CHAT, Ability.COMPLETION})
_ALL = frozenset(Ability)
_GENERATIVE_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def kind_of_class(name: str) -> ModelKind:
    """The kind of a transformers class or architecture (``GPT2LMHeadModel``, ``BertModel``)."""
    if name.endswith(_GENERATIVE_SUFFIXES) or name == "AutoModelForCausalLM":
        return ModelKind.CAUSAL_LM
    if name.endswith("ForSequenceClassification"):
        return ModelKind.CLASSIFIER
    if name == "AutoModel" or (name.endswith("Model") and "For" not in name):
        return ModelKind.ENCODER
    return ModelKind.OTHER


def abilities_of(kind: ModelKind, detail: str = "") -> Abilities:
    """The routes `kind` answers; `detail` (a class name) goes into the reason when none."""
    if kind in (ModelKind.SERVER, ModelKind.EXTERNAL_API):
        return Abilities(kind, _ALL)
    if kind is ModelKind.CAUSAL_LM:
        return Abilities(kind, _GENERATES)
    if kind is ModelKind.ENCODER:
        return Abilities(kind, frozenset({Ability.EMBEDDING}))
    if kind is ModelKind.CLASSIFIER:
        return Abilities(kind, frozenset(), "a sequence classifier: no OpenAI-compatible route")
    what = f" ({detail})" if detail else ""
    return Abilities(kind, frozenset(), f"neither a causal LM nor a base encoder{what}")


def _architectures(option: ModelConfig) -> list[str]:
    config = Path(option.resolved_model_id()) / "config.json"
    try:
        data: Any = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = data.get("architectures") if isinstance(data, dict) else None
    return [a for a in found or () if isinstance(a, str)]


def option_abilities(option: ModelConfig) -> Abilities:
    """What `option` can do, read from its config (and its local config.json) without loading."""
    if option.framework in SERVER_FRAMEWORKS:
        return abilities_of(ModelKind.SERVER)
    if option.is_external:
        provider = (option.provider or "").lower()
        if provider in OPENAI_COMPATIBLE_PROVIDERS or (option.api_endpoint and not provider):
            return abilities_of(ModelKind.EXTERNAL_API)
        return Abilities(
            ModelKind.EXTERNAL_API,
            frozenset(),
            f"provider {option.provider!r} has no OpenAI-compatible endpoint vramdeck knows",
        )
    if option.framework not in ("transformers", "pytorch"):
        return Abilities(ModelKind.OTHER, frozenset(), f"framework {option.framework!r}")
    if option.auto_class:
        return abilities_of(kind_of_class(option.auto_class), option.auto_class)
    names = _architectures(option)
    if not names:
        return Abilities(
            ModelKind.OTHER, frozenset(), "its config.json names no architecture (set auto_class)"
        )
    return abilities_of(kind_of_class(names[0]), names[0])


def model_abilities(model: Any) -> Abilities:
    """What a loaded in-process model can do, from its class."""
    name = type(model).__name__
    return abilities_of(kind_of_class(name), name)


__all__ = [
    "OPENAI_COMPATIBLE_PROVIDERS",
    "SERVER_FRAMEWORKS",
    "Abilities",
    "Ability",
    "ModelKind",
    "abilities_of",
    "kind_of_class",
    "model_abilities",
    "option_abilities",
]
