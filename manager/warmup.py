"""Warm-up for real: load a task's model and run one small inference on it, so the first request a
person sends is not the one that pays for the tokenizer, the kernels and the caches.

The inference is `vramdeck.manager.inference`'s warm-up (a few tokens, or one sentence
embedded); its latency is kept in the ledger beside the load's figures and reported in
`ModelWarmedUp`. A model that cannot run inference here (an external API, a server, a
classifier) is loaded only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .core import Core
from .events import ModelWarmedUp
from .eviction import describe_failure
from .inference import Inference

if TYPE_CHECKING:
    from .model_manager import ModelManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmUp:
    """What warming one task up measured, in seconds: how long its model's load took
    (`load_s`), and its first inference (`first_inference_s`; None: loaded only, or the inference
    failed, which `ModelWarmedUp.error` says)."""

    load_s: float | None
    first_inference_s: float | None


class WarmingUp:
    """Warms the tasks of one manager up; owns the inference workers the warm-ups run in."""

    def __init__(self, core: Core, manager: ModelManager) -> None:
        self._core = core
        self._manager = manager
        self._inference: Inference | None = None

    @property
    def inference(self) -> Inference:
        """The manager's inference service, created on first use."""
        if self._inference is None:
            self._inference = Inference(self._manager)
        return self._inference

    async def warm_up(self, task: str) -> WarmUp:
        """Load `task` (errors as `load_model`'s) and run one small inference while holding it.

        An inference that fails leaves the model loaded; the failure is logged and reported in
        the event, not raised: the load, which is what a warm-up promises, succeeded.
        """
        async with self._manager.use(task) as model:
            return await self._warm_held(task, model)

    @contextlib.asynccontextmanager
    async def holding(self, task: str) -> AsyncIterator[Any]:
        """Load `task`, warm it up as `warm_up` does, and hold it until the block ends (so a
        plan of several warm-ups never evicts the ones already done)."""
        async with self._manager.use(task) as model:
            await self._warm_held(task, model)
            yield model

    async def _warm_held(self, task: str, model: Any) -> WarmUp:
        error: str | None = None
        seconds: float | None = None
        loaded = self._core.table.loaded(task)
        if loaded is None:  # held, so never: the lease keeps it resident
            raise RuntimeError(f"{task} is held but not loaded")
        try:
            seconds = await self.inference.warm_up_held(task, model)
        except Exception as exc:  # noqa: BLE001 - any model's failure is reported, it stays loaded
            error = describe_failure(exc)
            logger.warning("the warm-up inference of %s failed: %s", task, error)
        if seconds is not None and loaded.holds_memory:
            self._core.ledger.record_first_inference(loaded.config, loaded.device, seconds)
            # Saved by the device's worker: file I/O stays off the loop.
            self._core.devices.submit(loaded.device, self._core.ledger.save)
        self._core.emit(
            ModelWarmedUp(task=task, option=loaded.option, model_id=loaded.model_id,
                          device=loaded.device, first_inference_s=seconds,
                          load_s=loaded.load_duration_s, error=error)
        )  # fmt: skip
        return WarmUp(load_s=loaded.load_duration_s, first_inference_s=seconds)

    async def close(self) -> None:
        """Let a warm-up's inference finish and release the workers."""
        if self._inference is not None:
            await self._inference.close()
            self._inference = None


__all__ = ["WarmUp", "WarmingUp"]
