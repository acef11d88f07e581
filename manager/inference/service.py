"""`Inference`: runs a held model's generation or embedding in its device's inference worker.

The caller holds the model (``async with manager.use(task) as model``) for as long as it awaits
or iterates anything here; this module never loads or releases models. Tokenizers are loaded in
the worker on first use, from the option's own folder, and kept as long as the model object is.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .abilities import Abilities, ModelKind, model_abilities, option_abilities
from .embeddings import Embeddings, embed_texts
from .text import Generation, GenerationRequest, generate_text
from .workers import InferenceWorkers, outlive_cancellation

if TYPE_CHECKING:
    from vramdeck.manager.model_manager import ModelManager

#: What a warm-up runs: a few tokens, or one short sentence.
WARMUP_PROMPT = "Hello"
WARMUP_TOKENS = 4
WARMUP_SENTENCE = "A short sentence to warm up the model."


#: Files of which a folder holds at least one when a tokenizer was saved beside the weights.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model",
    "spiece.model", "sentencepiece.bpe.model",
)  # fmt: skip


def has_tokenizer(source: str) -> bool:
    """Whether a tokenizer can be loaded from `source`: a hub id is assumed to have one; a local
    folder has one when one of `TOKENIZER_FILES` is in it."""
    if not os.path.isdir(source):
        return True
    return any(os.path.isfile(os.path.join(source, name)) for name in TOKENIZER_FILES)


def is_in_process(model: Any) -> bool:
    """Whether `model` is a torch module in this process (not a server handle or API config)."""
    return hasattr(model, "parameters") and hasattr(model, "config") and hasattr(model, "device")


def device_of(model: Any) -> str:
    """The device a transformers model sits on, as the manager names devices (cpu, cuda:0)."""
    return str(model.device)


class TextStream:
    """The pieces of one generation as they are made, on the loop; then its `Generation`.

    Iterate it (``async for piece in stream``), then await `result()`. `aclose()` stops the
    generation within a token and returns once the worker has let go of the model, so the
    caller's lease may end right after it.
    """

    def __init__(self, submit: Callable[[Callable[[str], None], threading.Event], Future[Any]]):
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._cancel = threading.Event()
        self._future: asyncio.Future[Generation] = asyncio.wrap_future(
            submit(self._from_worker, self._cancel)
        )
        self._future.add_done_callback(lambda _: self._queue.put_nowait(None))

    def _from_worker(self, piece: str) -> None:  # called in the worker thread
        self._loop.call_soon_threadsafe(self._queue.put_nowait, piece)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        while (piece := await self._queue.get()) is not None:
            yield piece

    async def result(self) -> Generation:
        """The whole generation (raises what the generation raised)."""
        return await asyncio.shield(self._future)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    async def aclose(self) -> None:
        """Stop the generation and wait until the worker is done with the model."""
        self._cancel.set()
        if await outlive_cancellation(self._future):
            raise asyncio.CancelledError


class Inference:
    """Generation and embeddings for the models of `manager`, off its event loop."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager
        self.workers = InferenceWorkers()
        self._tokenizers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._tokenizers_lock = threading.Lock()

    # ----------------------------------------------------------------- what a task can do

    def abilities(self, task: str, model: Any = None) -> Abilities:
        """What `task`'s model can do: from the loaded `model` when given, else its option."""
        if model is not None and is_in_process(model):
            return model_abilities(model)
        return option_abilities(self._manager.tasks[task].get_selected_config())

    # ----------------------------------------------------------------- running

    def _source(self, task: str) -> str:
        """Where the loaded option of `task` lives (its tokenizer is beside the weights)."""
        info = self._manager.get_loaded_models().get(task)
        config = self._manager.tasks[task]
        option = config.options.get(info["option"]) if info else None
        return (option or config.get_selected_config()).resolved_model_id()

    def _tokenizer(self, model: Any, source: str) -> Any:  # in the worker
        with self._tokenizers_lock:
            found = self._tokenizers.get(model)
        if found is None:
            from transformers import AutoTokenizer

            found = AutoTokenizer.from_pretrained(source)
            with self._tokenizers_lock:
                self._tokenizers[model] = found
        return found

    async def generate(self, task: str, model: Any, request: GenerationRequest) -> Generation:
        """The whole generation of `request` by `task`'s held `model`.

        A cancelled caller stops the generation within a token and returns once the worker let
        go of the model (so the caller's lease can end safely).
        """
        source = self._source(task)
        cancel = threading.Event()

        def run() -> Generation:
            return generate_text(model, self._tokenizer(model, source), request, cancel=cancel)

        queued = self.workers.submit(device_of(model), run)
        future = asyncio.wrap_future(queued)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.set()
            if not queued.cancel():
                await outlive_cancellation(future)
            raise

    def stream(self, task: str, model: Any, request: GenerationRequest) -> TextStream:
        """Start generating `request`; the pieces arrive through the returned stream."""
        source = self._source(task)

        def submit(on_text: Callable[[str], None], cancel: threading.Event) -> Future[Any]:
            def run() -> Generation:
                tokenizer = self._tokenizer(model, source)
                return generate_text(model, tokenizer, request, on_text=on_text, cancel=cancel)

            return self.workers.submit(device_of(model), run)

        return TextStream(submit)

    async def embed(self, task: str, model: Any, texts: Sequence[str]) -> Embeddings:
        """Normalized mean-pooled embeddings of `texts` (one batch) by `task`'s held `model`."""
        source = self._source(task)

        def run() -> Embeddings:
            return embed_texts(model, self._tokenizer(model, source), texts)

        return await self.workers.run(device_of(model), run)

    async def warm_up(self, task: str) -> float | None:
        """Load `task` if needed and run one small inference; its latency in seconds.

        None when the model is not run in this process (a server, an API) or does neither
        generation nor embeddings.
        """
        async with self._manager.use(task) as model:
            return await self.warm_up_held(task, model)

    async def warm_up_held(self, task: str, model: Any) -> float | None:
        """Run one small inference on `task`'s held `model`; its latency in seconds (the first
        call also loads the tokenizer, as a first request would), or None as `warm_up` (and for
        a model saved without a tokenizer: nothing can be run on it)."""
        if not is_in_process(model) or not has_tokenizer(self._source(task)):
            return None
        kind = self.abilities(task, model).kind
        started = time.perf_counter()
        if kind is ModelKind.CAUSAL_LM:
            request = GenerationRequest(
                prompt=WARMUP_PROMPT, max_tokens=WARMUP_TOKENS, temperature=0
            )
            await self.generate(task, model, request)
        elif kind is ModelKind.ENCODER:
            await self.embed(task, model, [WARMUP_SENTENCE])
        else:
            return None
        return time.perf_counter() - started

    async def close(self) -> None:
        """Let queued inference finish and release the workers."""
        await self.workers.close()


__all__ = ["Inference", "TextStream", "device_of", "is_in_process"]
