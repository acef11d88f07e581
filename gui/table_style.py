"""How the panel's read-only tables look: whole-row selection, no grid, striped rows."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QTableView


def style_read_only_table(view: QTableView, *, row_height: int) -> None:
    """Rows selected whole, nothing edited in place, no grid, no row numbers, striped rows."""
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setAlternatingRowColors(True)
    view.setShowGrid(False)
    view.setWordWrap(False)
    view.verticalHeader().hide()
    view.verticalHeader().setDefaultSectionSize(row_height)


__all__ = ["style_read_only_table"]
