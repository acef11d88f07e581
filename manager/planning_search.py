"""The planner's search: the fitting selection that places the most bytes.

Exhaustive up to a number of combinations, greedy above (it may then miss the best). Works on
any planner that can list candidates, place a selection and count its bytes
(`manager.planning.Planner`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

#: Above this many combinations the search is greedy instead of exhaustive.
EXHAUSTIVE_LIMIT = 50_000

Selection = dict[str, str]


class Searchable(Protocol):
    @property
    def choices(self) -> Mapping[str, Mapping[str, object]]: ...

    def candidates(self, task: str, current: Mapping[str, str] | None) -> list[str]: ...

    def combinations(self) -> int: ...

    def fits(self, selection: Mapping[str, str]) -> bool: ...

    def total_bytes(self, selection: Mapping[str, str]) -> int: ...


@dataclass(frozen=True)
class Suggestion:
    """The outcome of a search: `selection` is None when no fitting selection was found."""

    search: str  # "exhaustive" or "greedy"
    combinations: int
    selection: Selection | None
    total_bytes: int


def best_selection(
    planner: Searchable, current: Mapping[str, str], *, limit: int = EXHAUSTIVE_LIMIT
) -> Suggestion:
    """The fitting selection with the most bytes; ties keep more of `current`."""
    count = planner.combinations()
    if count <= limit:
        found, search = _exhaustive(planner, current), "exhaustive"
    else:
        found, search = _greedy(planner, current), "greedy"
    total = planner.total_bytes(found) if found is not None else 0
    return Suggestion(search, count, found, total)


def _score(
    planner: Searchable, selection: Mapping[str, str], current: Mapping[str, str]
) -> tuple[int, int]:
    kept = sum(1 for task, option in selection.items() if current.get(task) == option)
    return planner.total_bytes(selection), kept


def _exhaustive(planner: Searchable, current: Mapping[str, str]) -> Selection | None:
    tasks = list(planner.choices)
    lists = [planner.candidates(task, current) for task in tasks]
    best: Selection | None = None
    best_score = (-1, -1)
    for combo in itertools.product(*lists):
        selection = dict(zip(tasks, combo, strict=True))
        score = _score(planner, selection, current)
        if score > best_score and planner.fits(selection):
            best, best_score = selection, score
    return best


def _greedy(planner: Searchable, current: Mapping[str, str]) -> Selection | None:
    smallest = {task: planner.candidates(task, current)[-1] for task in planner.choices}
    starts = [s for s in (smallest, dict(current)) if _valid_start(planner, s)]
    results = [_climb(planner, s, current) for s in starts]
    return max(results, key=lambda s: _score(planner, s, current), default=None)


def _valid_start(planner: Searchable, selection: Mapping[str, str]) -> bool:
    candidates = {task: planner.candidates(task, selection) for task in planner.choices}
    return all(o in candidates[t] for t, o in selection.items()) and planner.fits(selection)


def _climb(planner: Searchable, start: Selection, current: Mapping[str, str]) -> Selection:
    """Take the upgrade that adds the most bytes and still fits, until none does."""
    selection = dict(start)
    while True:
        size = planner.total_bytes(selection)
        steps = (
            {**selection, task: option}
            for task in planner.choices
            for option in planner.candidates(task, current)
        )
        fitting = [s for s in steps if planner.total_bytes(s) > size and planner.fits(s)]
        if not fitting:
            return selection
        selection = max(fitting, key=lambda s: _score(planner, s, current))


__all__ = ["EXHAUSTIVE_LIMIT", "Searchable", "Selection", "Suggestion", "best_selection"]
