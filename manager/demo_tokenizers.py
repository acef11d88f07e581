"""Tokenizers for the demo models, made on this machine with the ``tokenizers`` package.

The demo's models have random weights, so whatever they say is noise; but without a tokenizer
beside the weights nothing can be run on them at all (Try-it, the endpoint, a warm-up). A word
tokenizer fills each model's whole vocabulary: the words of a few sentences about the demo's
world first, then made-up words of two and three syllables, so that every id a random model
picks decodes to a word and its output reads as a stream of words rather than as nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SENTENCES = (
    "The camera saw a red car turn left at the corner of the street.",
    "A person walks a dog along the river in the morning light.",
    "Two trucks stopped at the gate while the guard checked them.",
    "The model answers questions about the video it watched today.",
    "Frames arrive at thirty per second from the front door camera.",
    "Hello, how are you? I am fine, thank you, and the weather is good.",
)
CONSONANTS = "bdfghklmnprstvz"
VOWELS = "aeiou"

#: The special tokens each kind of model needs, by role.
GPT2_SPECIALS = {"unk": "<|unk|>", "eos": "<|endoftext|>"}
BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


def corpus_words() -> list[str]:
    """The sentences' words and punctuation, lower-cased, in first-seen order."""
    from tokenizers.pre_tokenizers import Whitespace

    split = Whitespace()
    seen: dict[str, None] = {}
    for sentence in SENTENCES:
        for word, _span in split.pre_tokenize_str(sentence.lower()):
            seen.setdefault(word, None)
    return list(seen)


def made_up_words() -> Iterator[str]:
    """Two-syllable words (bada, bade, …), then three-syllable ones, never a corpus word."""
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    for n in (2, 3):
        for parts in itertools.product(syllables, repeat=n):
            yield "".join(parts)


def word_tokenizer(vocab_size: int, specials: dict[str, str]) -> Any:
    """A `PreTrainedTokenizerFast` of exactly `vocab_size` ids: `specials` first, then words.

    Unknown words in a prompt become the unknown token, so a prompt is never empty.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if vocab_size <= len(specials):
        raise ValueError(f"a vocabulary of {vocab_size} has no room for {len(specials)} specials")
    words = list(specials.values())
    words += [w for w in corpus_words() if w not in words]
    known = set(words)
    fill = (w for w in made_up_words() if w not in known)
    words += itertools.islice(fill, max(0, vocab_size - len(words)))
    words = words[:vocab_size]  # a small model keeps the specials and the first words
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, specials["unk"]))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    roles = {f"{role}_token": token for role, token in specials.items()}
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **roles)  # type: ignore[no-untyped-call]


def save_gpt2_tokenizer(target: Path, vocab_size: int) -> int:
    """Save a GPT-2 demo model's tokenizer in `target`; returns its end-of-text id."""
    tokenizer = word_tokenizer(vocab_size, GPT2_SPECIALS)
    tokenizer.bos_token = GPT2_SPECIALS["eos"]
    tokenizer.save_pretrained(target)
    return int(tokenizer.eos_token_id)


def save_bert_tokenizer(target: Path, vocab_size: int) -> int:
    """Save a BERT demo model's tokenizer in `target`; returns its padding id."""
    tokenizer = word_tokenizer(vocab_size, BERT_SPECIALS)
    tokenizer.save_pretrained(target)
    return int(tokenizer.pad_token_id)


__all__ = ["save_bert_tokenizer", "save_gpt2_tokenizer", "word_tokenizer"]
