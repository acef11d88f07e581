"""The planner: where a selection of models goes, whether it fits, and which selection fits best.

One planner serves ``vramdeck plan``, ``vramdeck validate``, the panel's budget view,
``ModelManager.validate_memory_budget`` / ``check_budget`` and the thrash fixes. It is pure: it
works on one set of device readings taken by the caller, so every figure of a plan comes from
the same moment, and it loads nothing. It counts what the manager's placement counts: a device
may hold ``offload_threshold × total`` in all, the manager's models at most
``memory_budget_gb`` of that, and memory other processes hold comes off the top. Options that
cannot load here (a missing package, no loader, an external API whose key is unset or whose
provider is unknown) are never placed nor suggested; the plan says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .budget import device_limit, manager_limit
from .config import GIB, InferenceConfig, ModelConfig, TaskConfig
from .loaders.external_api import DEFAULT_ENDPOINTS, external_api_config
from .loaders.servers.placement import PlacementError, server_devices, split_evenly
from .memory import HOST, DeviceReading, is_cuda
from .planning_report import BudgetCheck, Requirement
from .planning_search import EXHAUSTIVE_LIMIT, Selection, Suggestion, best_selection

#: The ledger's ``measured_bytes(option, device)``: what a model took when it last loaded there.
MeasuredBytes = Callable[[ModelConfig, str], int | None]


@dataclass(frozen=True)
class Choice:
    """One option of one task as the planner sees it.

    `device` is the option's wanted device (``auto``, ``cpu``, ``cuda:N``); `nbytes` what it takes
    there (measured, else the config's estimate; 0 for an external API). `skip_reason` says why
    it cannot load here, or is None.
    """

    task: str
    option: str
    model_id: str
    device: str
    nbytes: int
    measured: bool
    external: bool
    skip_reason: str | None
    spans: tuple[str, ...] = ()  # a server on several GPUs: its devices, its share on each

    @property
    def loadable(self) -> bool:
        return self.skip_reason is None

    @property
    def placed_bytes(self) -> int:
        """What placing it takes: nothing for an API or for what cannot load here."""
        return self.nbytes if self.loadable and not self.external else 0


@dataclass(frozen=True)
class DeviceRoom:
    """One device as a plan counts it, from one reading (bytes).

    `cap` is what the manager's models may hold (the threshold line, capped by
    ``memory_budget_gb``); `others` what other processes hold now; `budget` what is left for the
    selected models: the cap, less whatever of the others' memory reaches past the threshold line.
    """

    device: str
    name: str
    probe: str
    total: int
    cap: int
    limit: int
    others: int

    @property
    def budget(self) -> int:
        return max(0, min(self.cap, self.limit - self.others))

    @property
    def taken_by_others(self) -> int:
        """How much of the cap other processes' memory takes away (0 while they stay below the
        threshold line less the cap)."""
        return max(0, self.cap - self.budget)


@dataclass
class DevicePlan:
    """The models a selection places on one device, against its budget."""

    room: DeviceRoom
    tasks: dict[str, int] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.room.device

    @property
    def required(self) -> int:
        return sum(self.tasks.values())

    @property
    def fits(self) -> bool:
        return self.required <= self.room.budget

    @property
    def over(self) -> int:
        """Bytes over the budget (≤ 0 when it fits)."""
        return self.required - self.room.budget

    def as_dict(self) -> dict[str, object]:
        """In GiB, as the seed's ``validate_memory_budget`` reports sizes."""
        r = self.room
        return {
            "name": r.name,
            "probe": r.probe,
            "total_gb": r.total / GIB,
            "budget_gb": r.budget / GIB,
            "cap_gb": r.cap / GIB,
            "others_gb": r.others / GIB,
            "taken_by_others_gb": r.taken_by_others / GIB,
            "required_gb": self.required / GIB,
            "fits": self.fits,
            "tasks": {t: b / GIB for t, b in self.tasks.items()},
        }


def cannot_load_reason(option: ModelConfig) -> str | None:
    """Why `option` cannot load here, or None: the loader's reason (package, framework), else for
    an external API a key that is not set or a provider with no known endpoint."""
    if option.unavailable_reason:
        return option.unavailable_reason
    if not option.is_external:
        return None
    api = external_api_config(option)
    if api.endpoint is None:
        known = ", ".join(sorted(DEFAULT_ENDPOINTS))
        what = f"provider {option.provider!r}" if option.provider else "no provider"
        return f"{what} is not one vramdeck knows ({known}) and no api_endpoint is given"
    if option.requires_api_key and not api.has_key:
        return f"needs an API key: {api.api_key_env or '<PROVIDER>_API_KEY'} is not set"
    return None


def device_rooms(
    readings: Mapping[str, DeviceReading],
    inference: InferenceConfig,
    held: Mapping[str, int] | None = None,
) -> dict[str, DeviceRoom]:
    """The devices models may be placed on (the CUDA devices and the host), each as one reading
    shows it; `held` is device → bytes the manager's loaded models hold there (not "others")."""
    held = held or {}
    rooms = {}
    for device, r in readings.items():
        if device != HOST and not is_cuda(device):
            continue
        others = max(0, r.used - held.get(device, 0))
        limit = device_limit(r.total, inference)
        cap = manager_limit(r.total, inference)
        rooms[device] = DeviceRoom(device, r.name, r.probe, r.total, cap, limit, others)
    return rooms


def held_bytes(loaded: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Device → what the manager's loaded models hold, from ``get_loaded_models()``: the part of
    a reading that is the manager's own, not other processes'."""
    held: dict[str, int] = {}
    for info in loaded.values():
        parts = info.get("bytes_by_device") or {str(info["device"]): info["measured_bytes"]}
        for device, nbytes in parts.items():  # a server on several GPUs holds on each
            held[device] = held.get(device, 0) + int(nbytes)
    return held


class Planner:
    """Places and searches selections of `choices` (task → option → Choice) on fixed rooms."""

    def __init__(
        self, choices: Mapping[str, Mapping[str, Choice]], rooms: Mapping[str, DeviceRoom]
    ) -> None:
        self.choices = choices
        self.rooms = dict(rooms)

    @classmethod
    def from_tasks(
        cls,
        tasks: Mapping[str, TaskConfig],
        readings: Mapping[str, DeviceReading],
        inference: InferenceConfig,
        measured_bytes: MeasuredBytes,
        *,
        held: Mapping[str, int] | None = None,
        holds_memory: Callable[[ModelConfig], bool] | None = None,
    ) -> Planner:
        """Choices from a config's tasks, each taking its measured bytes (the ledger's
        ``measured_bytes``), else its estimate, as the manager counts a load. `holds_memory`
        says which options take local memory (the manager's loaders decide; without it, all
        but external APIs)."""
        rooms = device_rooms(readings, inference, held)
        cuda = [d for d in rooms if is_cuda(d)]
        auto_device = cuda[0] if cuda else HOST
        holds = holds_memory or (lambda option: not option.is_external)
        choices = {
            name: {
                option.name: _choice(
                    name, option, auto_device, measured_bytes, holds(option), list(readings)
                )
                for option in task.options.values()
            }
            for name, task in tasks.items()
        }
        return cls(choices, rooms)

    # ------------------------------------------------------------------ one selection

    def placement(self, selection: Mapping[str, str]) -> dict[str, DevicePlan]:
        """Where the selected models go, as the manager places them: a fixed device as
        configured; ``auto``, largest first, on the CUDA device with the most budget left (the
        host when there is none). Every device appears, with or without models."""
        plans = {d: DevicePlan(room) for d, room in self.rooms.items()}
        placed = [c for _, c in self._chosen(selection) if c.placed_bytes]
        for c in (c for c in placed if c.spans):  # as the manager places them: fixed devices
            for device, share in split_evenly(c.placed_bytes, c.spans).items():
                plans.setdefault(device, DevicePlan(_absent(device)))
                plans[device].tasks[c.task] = share
        for c in (c for c in placed if c.device != "auto" and not c.spans):
            plans.setdefault(c.device, DevicePlan(_absent(c.device)))
            plans[c.device].tasks[c.task] = c.placed_bytes
        pool = [d for d in self.rooms if is_cuda(d)] or [HOST]
        for device in pool:
            plans.setdefault(device, DevicePlan(_absent(device)))
        autos = (c for c in placed if c.device == "auto" and not c.spans)
        for c in sorted(autos, key=lambda c: -c.nbytes):
            best = max(pool, key=lambda d: -plans[d].over)
            plans[best].tasks[c.task] = c.placed_bytes
        return plans

    def fits(self, selection: Mapping[str, str]) -> bool:
        return all(p.fits for p in self.placement(selection).values())

    def over_budget(self, selection: Mapping[str, str]) -> dict[str, int]:
        """Device → bytes over its budget, for the devices that are over."""
        return {p.device: p.over for p in self.placement(selection).values() if not p.fits}

    def total_bytes(self, selection: Mapping[str, str]) -> int:
        """What the selection places, in all (APIs and what cannot load count 0)."""
        return sum(c.placed_bytes for _, c in self._chosen(selection))

    def skipped(self, selection: Mapping[str, str]) -> dict[str, str]:
        """Task → why its selected option cannot load here (so it is not counted)."""
        return {t: c.skip_reason for t, c in self._chosen(selection) if c.skip_reason}

    def option_over_budget(
        self, selection: Mapping[str, str], task: str, option: str
    ) -> dict[str, int]:
        """Device → bytes over, with `task` switched to `option` and the others as selected.
        An option that places nothing (an API) never makes a device go over: empty."""
        if not self.choices[task][option].placed_bytes:
            return {}
        return self.over_budget({**selection, task: option})

    # ------------------------------------------------------------------ the search

    def candidates(self, task: str, current: Mapping[str, str] | None) -> list[str]:
        """Options a search may pick, largest first: the loadable ones, else the current one
        (which then places nothing)."""
        options = self.choices[task]
        usable = [name for name, c in options.items() if c.loadable]
        if not usable:
            usable = [current[task]] if current is not None else list(options)[:1]
        return sorted(usable, key=lambda name: -options[name].placed_bytes)

    def combinations(self) -> int:
        count = 1
        for task in self.choices:
            count *= len(self.candidates(task, None))
        return count

    def best(self, current: Mapping[str, str], *, limit: int = EXHAUSTIVE_LIMIT) -> Suggestion:
        """The fitting selection that places the most bytes; ties keep more of `current`.

        Exhaustive up to `limit` combinations, else greedy (it may miss the best).
        """
        return best_selection(self, current, limit=limit)

    def _chosen(self, selection: Mapping[str, str]) -> Iterator[tuple[str, Choice]]:
        for task, option in selection.items():
            yield task, self.choices[task][option]


def _absent(device: str) -> DeviceRoom:
    """A device a model is configured for that this machine does not have: room for nothing."""
    return DeviceRoom(device, "not present", "none", 0, 0, 0, 0)


def _choice(
    task: str,
    option: ModelConfig,
    auto_device: str,
    measured: MeasuredBytes,
    holds: bool,
    present: list[str],
) -> Choice:
    device = option.device if option.device != "auto" else auto_device
    try:
        spans = server_devices(option, device, present) if holds else (device,)
        misplaced = None
    except PlacementError as exc:  # asks for more GPUs than there are: placed nowhere
        spans, misplaced = (device,), str(exc)
    seen = measured(option, device) if holds else None
    estimate = option.vram_bytes if holds else 0
    return Choice(
        task=task,
        option=option.name,
        model_id=option.model_id,
        device=option.device,
        nbytes=seen if seen is not None else estimate,
        measured=seen is not None,
        external=not holds,
        skip_reason=cannot_load_reason(option) or misplaced,
        spans=spans if len(spans) > 1 else (),
    )


def check_selection(
    planner: Planner, tasks: Mapping[str, TaskConfig], inference: InferenceConfig
) -> BudgetCheck:
    """The selected options of `tasks`, placed by `planner`: the one budget check behind
    ``validate_memory_budget``, ``vramdeck validate`` and the panel's budget view."""
    selection = {name: task.selected for name, task in tasks.items()}
    plans = planner.placement(selection)
    primary = tuple(d for d in planner.rooms if is_cuda(d)) or (HOST,)
    requirements = {}
    for name, option in selection.items():
        c = planner.choices[name][option]
        requirements[name] = Requirement(
            tasks[name].options[option], c.device, c.placed_bytes, c.measured, not c.external
        )
    return BudgetCheck(
        plans={d: p for d, p in plans.items() if d in primary or p.tasks},
        requirements=requirements,
        primary=primary,
        threshold=inference.offload_threshold,
        memory_budget_gb=inference.memory_budget_gb,
        skipped=planner.skipped(selection),
    )


def validate_selection(
    tasks: Mapping[str, TaskConfig],
    readings: Mapping[str, DeviceReading],
    inference: InferenceConfig,
    measured_bytes: MeasuredBytes,
    *,
    held: Mapping[str, int] | None = None,
) -> dict[str, object]:
    """`check_selection` from one set of readings, as the seed's ``validate_memory_budget``
    report (the host is among the devices only when there is no GPU or a model is placed
    there)."""
    planner = Planner.from_tasks(tasks, readings, inference, measured_bytes, held=held)
    return check_selection(planner, tasks, inference).as_seed_dict()


__all__ = [
    "EXHAUSTIVE_LIMIT",
    "BudgetCheck",
    "Choice",
    "DevicePlan",
    "DeviceRoom",
    "Planner",
    "Requirement",
    "Selection",
    "Suggestion",
    "cannot_load_reason",
    "check_selection",
    "device_rooms",
    "held_bytes",
    "validate_selection",
]
