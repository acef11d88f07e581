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
from collections.abc import Mapping

from .config import Config, TaskConfig
from .core import Core
from .events import ConfigReloaded, PinChanged, RemovalReason, SelectionChanged, SwitchFailed
from .eviction import Eviction, describe_failure
from .loading import Loading
from .lru import LoadedModel

logger = logging.getLogger(__name__)

#: How long a config reload waits for the holders of a model it must unload.
LEASE_WAIT_S = 30.0


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
        """Select `option` (one of the task's, checked by the caller); a loaded task switches to
        it (see `_switch`)."""
        task = self._core.task(task_name)
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
            except Exception:  # any failed switch restores the old option, re-raised
                self._select(task, old)
                try:
                    await asyncio.shield(self._loading.flight(name))
                except Exception as exc:  # noqa: BLE001 - reported by its LoadFailed; the first counts
                    logger.debug("reloading %s's old option failed too: %s", name, exc)
                raise

    def _select(self, task: TaskConfig, name: str) -> None:
        old, task.selected = task.selected, name
        models = self._core.raw.get("models")
        if isinstance(models, dict) and isinstance(models.get(task.task_name), dict):
            models[task.task_name]["selected"] = name
        self._core.emit(SelectionChanged(task=task.task_name, old=old, new=name))

    async def reload(self, config: Config, lease_wait_s: float) -> None:
        """Put a re-read `config` in force. Models whose task still selects an option that
        loads the same way stay; the others are unloaded once loads in flight finish and their
        holders are done (ModelInUseError after `lease_wait_s`, and nothing changes)."""
        await self._loading.drain()
        leaving = [m for m in self._core.table.residents() if not _kept(m, config.tasks)]
        for model in leaving:
            await self._loading.released(model, lease_wait_s)
        for model in leaving:
            await self._eviction.unload(model, RemovalReason.CONFIG_RELOADED)
        for entry in self._core.table.entries():  # parked or asleep: kept on the same terms
            if entry.suspended is not None and not _kept(entry.suspended, config.tasks):
                await self._eviction.drop(entry, RemovalReason.CONFIG_RELOADED)
        self._core.use_config(config)
        self._core.table.reconfigure(config.tasks)
        tier = self._core.host_tier
        for task in tier.tasks():  # oldest first, until a smaller host_cache_gb holds them
            if tier.used_bytes <= max(0, self._core.host_cache_budget()):
                break
            await self._eviction.drop(self._core.table.entry(task), RemovalReason.CONFIG_RELOADED)
        for model in [*self._core.table.residents(), *self._core.table.suspended()]:
            model.config = config.tasks[model.task].options[model.option]
        self._core.emit(ConfigReloaded(path=str(config.path)))

    def set_pinned(self, task: str, pinned: bool) -> None:
        """Pin a task's model (never evicted, though it can still be unloaded) or unpin it."""
        self._core.task(task)
        self._core.table.entry(task).pinned = pinned
        self._core.emit(PinChanged(task=task, pinned=pinned))


def _kept(model: LoadedModel, tasks: Mapping[str, TaskConfig]) -> bool:
    """Whether a reloaded config still selects `model`'s option, loading the same way."""
    task = tasks.get(model.task)
    option = task.options.get(model.option) if task else None
    return (
        task is not None
        and option is not None
        and task.selected == model.option
        and option.load_signature() == model.config.load_signature()
    )


__all__ = ["LEASE_WAIT_S", "Selection"]
