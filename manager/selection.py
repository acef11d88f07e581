"""Which option serves each task, and switching a loaded task to another one.

A switch holds its task's switch lock, and new loads of the task wait for it, so the loaded model
always matches the selection. A switch runs to its end even if its caller is cancelled; its
outcome is then collected here (reported as `SwitchFailed`, logged once), never left for asyncio
to complain about.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from .config import TaskConfig
from .core import Core
from .errors import unknown_option
from .events import PinChanged, RemovalReason, SelectionChanged, SwitchFailed
from .eviction import Eviction, describe_failure
from .loading import Loading

logger = logging.getLogger(__name__)


class Selection:
    """Selections and pins of one manager's tasks."""

    def __init__(self, core: Core, loading: Loading, eviction: Eviction) -> None:
        self._core, self._loading, self._eviction = core, loading, eviction
        self._switch_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def settled(self, task: str) -> None:
        """Return once no switch of `task` is in progress (it decides which model a load gets)."""
        switching = self._switch_locks[task]
        while switching.locked():
            async with switching:
                pass

    async def select(self, task_name: str, option: str) -> None:
        """Select `option` for the task; a loaded task switches to it (see `_switch`)."""
        task = self._core.task(task_name)
        if option not in task.options:
            raise unknown_option(option, task_name, task.options)
        switch = asyncio.ensure_future(self._switch(task, option))
        switch.add_done_callback(lambda done: self._collected(task, option, done))
        await asyncio.shield(switch)

    def _collected(self, task: TaskConfig, new: str, done: asyncio.Future[None]) -> None:
        """The switch is over: retrieve its failure (its caller may be gone) and report it."""
        if done.cancelled() or (exc := done.exception()) is None:
            return
        reason = describe_failure(exc)
        logger.warning("switching %s to %s failed: %s", task.task_name, new, reason)
        self._core.emit(
            SwitchFailed(task=task.task_name, old=task.selected, new=new, reason=reason)
        )

    async def _switch(self, task: TaskConfig, option: str) -> None:
        """Unload, select, load; if the new option fails, the old one is selected and loaded
        again and the error is raised."""
        name = task.task_name
        async with self._switch_locks[name]:
            old = task.selected
            if option == old:
                return
            await self._loading.settle(name)
            loaded = self._core.table.loaded(name)
            if loaded is not None:
                await self._eviction.unload(loaded, RemovalReason.SWITCH, option)
            self._select(task, option)
            if loaded is None:
                return
            try:
                await asyncio.shield(self._loading.flight(name))
            except Exception:
                self._select(task, old)
                try:
                    await asyncio.shield(self._loading.flight(name))
                except Exception as exc:  # reported by its LoadFailed; the first error counts
                    logger.debug("reloading %s's old option failed too: %s", name, exc)
                raise

    def _select(self, task: TaskConfig, name: str) -> None:
        old, task.selected = task.selected, name
        models = self._core.raw.get("models")
        if isinstance(models, dict) and isinstance(models.get(task.task_name), dict):
            models[task.task_name]["selected"] = name
        self._core.emit(SelectionChanged(task=task.task_name, old=old, new=name))

    def set_pinned(self, task: str, pinned: bool) -> None:
        """Pin a task's model (never evicted, though it can still be unloaded) or unpin it."""
        self._core.task(task)
        self._core.table.entry(task).pinned = pinned
        self._core.emit(PinChanged(task=task, pinned=pinned))


__all__ = ["Selection"]
