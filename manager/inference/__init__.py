"""Inference on the manager's models, off the event loop: text generation for causal LMs,
sentence embeddings for encoders, and what each task's model can do.

Qt-free and HTTP-free: the endpoint (``vramdeck.serving``) and the panel both call this. torch and
transformers are imported inside the functions that run in the workers.
"""

from .abilities import Abilities, Ability, ModelKind, model_abilities, option_abilities
from .embeddings import Embeddings, embed_texts
from .service import Inference, TextStream, device_of, is_in_process
from .text import (
    FinishReason,
    Generation,
    GenerationRequest,
    InferenceInputError,
    fallback_chat_prompt,
    generate_text,
)
from .workers import InferenceWorkers

__all__ = [
    "Abilities",
    "Ability",
    "Embeddings",
    "FinishReason",
    "Generation",
    "GenerationRequest",
    "Inference",
    "InferenceInputError",
    "InferenceWorkers",
    "ModelKind",
    "TextStream",
    "device_of",
    "embed_texts",
    "fallback_chat_prompt",
    "generate_text",
    "is_in_process",
    "model_abilities",
    "option_abilities",
]
