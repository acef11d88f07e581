"""What vramdeck's manager offers beyond the original ``model_manager`` document: typed status,
residency, previews and thrash fixes, cancelling a load. `ModelManager` (the seed's names) is
built on this base; both work on the same services, which `ModelManager.__init__` creates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from .core import Core
from .eviction import Eviction
from .loading import Loading
from .memory import HOST, DeviceReading
from .preview import Preview, Previews, load_holding
from .residency import HostTierStatus, Residency
from .status import TaskState, TaskStatus, task_status
from .thrash import Fix, ThrashWatch, set_memory_budget, thrash_fixes
from .warmup import WarmingUp


class BeyondSeed:
    """vramdeck's additions to the seed API (a base of `ModelManager`, never used alone)."""

    _core: Core
    _eviction: Eviction
    _loading: Loading
    _previews: Previews
    _thrash: ThrashWatch
    _warming: WarmingUp
    device_readings: Callable[[], dict[str, DeviceReading]]
    use: Callable[[str], AbstractAsyncContextManager[Any]]

    async def cancel_load(self, task_type: str) -> bool:
        """Abandon the load of `task_type` in flight; returns once nothing of it is held (memory
        freed and verified, no server left, the task unloaded, LoadCancelled). Its waiting
        callers get LoadCancelledError. False when no load was in flight."""
        self._core.task(task_type)
        return await self._loading.cancel(task_type)

    def task_status(self, task_type: str, *, primary_device: str = HOST) -> TaskStatus:
        """A typed snapshot of `task_type` (`primary_device` stands for ``auto`` if unloaded)."""
        return task_status(self._core, task_type, primary_device)

    def task_state(self, task_type: str) -> TaskState:
        """Where the task stands: loading, in use, loaded, external, failed, unloaded, …"""
        return self.task_status(task_type).state

    def residency(self, task_type: str) -> Residency:
        """Where the task's model is: on its device, parked in RAM, sleeping, or off."""
        self._core.task(task_type)
        return self._core.table.entry(task_type).residency

    def host_tier_status(self) -> HostTierStatus:
        """The host-RAM tier for parked models: on or off (and why), its use and its budget
        (a first call may read the host's RAM and detect the devices: not on the GUI thread)."""
        return self._eviction.tiers.status()

    def is_pinned(self, task_type: str) -> bool:
        self._core.task(task_type)
        return self._core.table.entry(task_type).pinned

    def failure_reason(self, task_type: str) -> str | None:
        """Why the last load of `task_type`'s selected option failed, until it loads again."""
        task = self._core.task(task_type)
        return self._core.table.entry(task_type).failures.get(task.selected)

    def load_progress(self, task_type: str) -> tuple[float | None, str] | None:
        """(fraction, stage) of a load in flight, or None."""
        return self._core.table.entry(task_type).progress

    # ----------------------------------------------------------------- previews and thrash

    def preview_load(self, task_type: str) -> Preview:
        """What loading `task_type` would evict, from one reading; changes nothing."""
        return self._previews.load(task_type, self.device_readings())

    def preview_switch(self, task_type: str, model_name: str) -> Preview:
        """What switching `task_type` to `model_name` would evict; changes nothing."""
        return self._previews.switch(task_type, model_name, self.device_readings())

    def preview_warmup(self) -> Preview:
        """What `warmup_models(force=True)` would evict, and `what_fits` instead."""
        return self._previews.warmup(self.device_readings())

    async def warmup_what_fits(self) -> list[str]:
        """Load and warm up (as `warm_up`) the tasks `preview_warmup().what_fits` names;
        returns those that loaded."""
        plan = self._previews.what_fits(self.device_readings())
        return await load_holding(self._warming.holding, plan)

    def thrash_fixes(self, tasks: Sequence[str]) -> tuple[Fix, ...]:
        """Ways out of `tasks` pushing each other out (pin, raise the budget, switch)."""
        return thrash_fixes(self._core, tasks, self.device_readings())

    def set_memory_budget(self, budget_bytes: int | None) -> None:
        """Cap what the models may hold per device (None: no cap), in memory until the config
        is read again; loads from now on obey it. Saving it to the file is the caller's."""
        set_memory_budget(self._core.inference, budget_bytes)
