"""Colours the widgets share, so a task has the same colour in the chart and the budget view."""

from __future__ import annotations

#: Band colours (Tableau 10), one per task in config order.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
           "#9c755f", "#bab0ac", "#e15759")  # fmt: skip
OK_COLOR = "#2e7d32"
ERROR_COLOR = "#c62828"
WARNING_COLOR = "#e37400"
MUTED_COLOR = "#5f6368"
TEXT_COLOR = "#202124"


def task_color(task: str, order: list[str]) -> str:
    """`task`'s colour: its place in `order` (tasks not in it come after, by name)."""
    index = order.index(task) if task in order else len(order) + sum(map(ord, task))
    return PALETTE[index % len(PALETTE)]


__all__ = ["ERROR_COLOR", "MUTED_COLOR", "OK_COLOR", "PALETTE", "TEXT_COLOR", "WARNING_COLOR",
           "task_color"]  # fmt: skip
