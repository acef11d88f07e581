"""Sentence embeddings from a base encoder, as sentence-transformers computes them for MiniLM:
the mean of the token vectors over the attention mask, normalized to length 1.

Blocking; runs in a device's inference worker. A list of inputs is one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .text import InferenceInputError

#: Longest input, in tokens, when the tokenizer does not say (BERT's positions).
DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True)
class Embeddings:
    """One normalized vector per input, and the tokens the batch took (padding excluded)."""

    vectors: list[list[float]]
    prompt_tokens: int


def _max_length(tokenizer: Any, model: Any) -> int:
    limits = [DEFAULT_MAX_LENGTH]
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < 1_000_000:
        limits.append(declared)
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits)


def embed_texts(model: Any, tokenizer: Any, texts: Sequence[str]) -> Embeddings:
    """Mean-pooled, L2-normalized embeddings of `texts` in one batch (long texts truncated)."""
    import torch
    import torch.nn.functional as functional

    if not texts:
        raise InferenceInputError("no input to embed; send a string or a list of strings")
    batch = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=_max_length(tokenizer, model),
        return_tensors="pt",
    ).to(model.device)
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        vectors = functional.normalize(pooled.float(), p=2, dim=1)
    return Embeddings(vectors.cpu().tolist(), int(batch["attention_mask"].sum()))


__all__ = ["Embeddings", "embed_texts"]
