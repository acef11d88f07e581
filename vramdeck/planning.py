"""Which selections fit the devices' budgets, and which fitting selection has the largest models.

Pure: it places models with `manager.budget.plan_placement`, the same placement the manager's
``validate_memory_budget`` uses, from one set of device readings. Nothing is loaded.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from vramdeck.manager.budget import DevicePlan, plan_placement
from vramdeck.manager.config import InferenceConfig, ModelConfig, TaskConfig
from vramdeck.manager.memory import HOST, DeviceReading, is_cuda

#: Above this many combinations the search is greedy instead of exhaustive.
EXHAUSTIVE_LIMIT = 50_000

Selection = dict[str, str]


@dataclass(frozen=True)
class Choice:
    """One option of one task as the planner sees it.

    `device` is the option's wanted device (``auto``, ``cpu``, ``cuda:N``); `nbytes` what it takes
    there (measured, else estimated; 0 for an external API).
    """

    task: str
    option: str
    model_id: str
    device: str
    nbytes: int
    measured: bool
    external: bool
    unavailable_reason: str | None

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None


@dataclass(frozen=True)
class Suggestion:
    """The outcome of a search: `selection` is None when no fitting selection was found."""

    search: str  # "exhaustive" or "greedy"
    combinations: int
    selection: Selection | None
    total_bytes: int


def placement_readings(readings: Mapping[str, DeviceReading]) -> dict[str, DeviceReading]:
    """The devices models are placed on: every device read (``auto`` goes to CUDA, else cpu)."""
    cuda = {d: r for d, r in readings.items() if is_cuda(d)}
    return {**cuda, HOST: readings[HOST]} if HOST in readings else cuda


class Planner:
    """Fits and searches selections of `choices` (task → option → Choice) on fixed readings."""

    def __init__(
        self,
        choices: Mapping[str, Mapping[str, Choice]],
        readings: Mapping[str, DeviceReading],
        inference: InferenceConfig,
    ) -> None:
        self.choices = choices
        self.readings = placement_readings(readings)
        self.inference = inference

    @classmethod
    def from_tasks(
        cls,
        tasks: Mapping[str, TaskConfig],
        readings: Mapping[str, DeviceReading],
        inference: InferenceConfig,
        measured_bytes: Callable[[ModelConfig, str], int | None],
    ) -> Planner:
        """Choices from a config's tasks, each taking its measured bytes (the ledger's
        ``measured_bytes(option, device)``), else its estimate, as the manager counts."""
        cuda = [d for d in readings if is_cuda(d)]
        auto_device = cuda[0] if cuda else HOST
        choices: dict[str, dict[str, Choice]] = {}
        for name, task in tasks.items():
            choices[name] = {}
            for option in task.options.values():
                device = option.device if option.device != "auto" else auto_device
                measured = None if option.is_external else measured_bytes(option, device)
                estimate = 0 if option.is_external else option.vram_bytes
                choices[name][option.name] = Choice(
                    task=name,
                    option=option.name,
                    model_id=option.model_id,
                    device=option.device,
                    nbytes=measured if measured is not None else estimate,
                    measured=measured is not None,
                    external=option.is_external,
                    unavailable_reason=option.unavailable_reason,
                )
        return cls(choices, readings, inference)

    def placement(self, selection: Mapping[str, str]) -> dict[str, DevicePlan]:
        """Where the selected models go, and each device's total against its budget."""
        requirements = {
            task: (c.device, c.nbytes) for task, c in self._chosen(selection) if not c.external
        }
        return plan_placement(requirements, self.readings, self.inference)

    def fits(self, selection: Mapping[str, str]) -> bool:
        return all(p.fits for p in self.placement(selection).values())

    def over_budget(self, selection: Mapping[str, str]) -> dict[str, int]:
        """Device → bytes over its budget, for the devices that are over."""
        plans = self.placement(selection).values()
        return {p.device: p.required - p.budget for p in plans if not p.fits}

    def total_bytes(self, selection: Mapping[str, str]) -> int:
        return sum(c.nbytes for _, c in self._chosen(selection))

    def combinations(self) -> int:
        count = 1
        for task in self.choices:
            count *= len(self._candidates(task, None))
        return count

    def best(self, current: Mapping[str, str], *, limit: int = EXHAUSTIVE_LIMIT) -> Suggestion:
        """The fitting selection with the most bytes; ties keep more of `current`.

        Exhaustive up to `limit` combinations, else greedy (may miss the best).
        """
        count = self.combinations()
        if count <= limit:
            found = self._exhaustive(current)
            search = "exhaustive"
        else:
            found = self._greedy(current)
            search = "greedy"
        total = self.total_bytes(found) if found is not None else 0
        return Suggestion(search, count, found, total)

    # ------------------------------------------------------------------ search

    def _chosen(self, selection: Mapping[str, str]) -> Iterator[tuple[str, Choice]]:
        for task, option in selection.items():
            yield task, self.choices[task][option]

    def _candidates(self, task: str, current: Mapping[str, str] | None) -> list[str]:
        """Options the search may pick, largest first: the available ones, else the current."""
        options = self.choices[task]
        usable = [name for name, c in options.items() if c.available]
        if not usable:
            usable = [current[task]] if current is not None else list(options)[:1]
        return sorted(usable, key=lambda name: -options[name].nbytes)

    def _score(self, selection: Mapping[str, str], current: Mapping[str, str]) -> tuple[int, int]:
        kept = sum(1 for task, option in selection.items() if current.get(task) == option)
        return self.total_bytes(selection), kept

    def _exhaustive(self, current: Mapping[str, str]) -> Selection | None:
        tasks = list(self.choices)
        lists = [self._candidates(task, current) for task in tasks]
        best: Selection | None = None
        best_score = (-1, -1)
        for combo in itertools.product(*lists):
            selection = dict(zip(tasks, combo, strict=True))
            score = self._score(selection, current)
            if score > best_score and self.fits(selection):
                best, best_score = selection, score
        return best

    def _greedy(self, current: Mapping[str, str]) -> Selection | None:
        smallest = {task: self._candidates(task, current)[-1] for task in self.choices}
        starts = [s for s in (smallest, dict(current)) if self._valid_start(s)]
        results = [self._climb(s, current) for s in starts]
        return max(results, key=lambda s: self._score(s, current), default=None)

    def _valid_start(self, selection: Mapping[str, str]) -> bool:
        candidates = {task: self._candidates(task, selection) for task in self.choices}
        return all(o in candidates[t] for t, o in selection.items()) and self.fits(selection)

    def _climb(self, start: Selection, current: Mapping[str, str]) -> Selection:
        """Take the upgrade that adds the most bytes and still fits, until none does."""
        selection = dict(start)
        while True:
            steps = (
                {**selection, task: option}
                for task in self.choices
                for option in self._candidates(task, current)
                if self.choices[task][option].nbytes > self.choices[task][selection[task]].nbytes
            )
            fitting = [s for s in steps if self.fits(s)]
            if not fitting:
                return selection
            selection = max(fitting, key=lambda s: self._score(s, current))


__all__ = ["EXHAUSTIVE_LIMIT", "Choice", "Planner", "Selection", "Suggestion"]
