"""The task table's model column: a combo box of the task's options, always shown.

Each item of the list shows the option's VRAM estimate and speed; options that cannot load here
are disabled, with the reason as their tooltip. The closed box shows the chosen option's name
only: its estimate is the row's Estimated column, and at 1366 px the whole label was cut
("gpt2-medium · 82 Mi"). Choosing one commits at once (no Enter needed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QPaintEvent, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionComboBox,
    QStyleOptionViewItem,
    QStylePainter,
    QWidget,
)

from .records import OptionInfo, TaskRow
from .task_table import ROW_ROLE

Index = QModelIndex | QPersistentModelIndex
OPTION_NAME_ROLE = Qt.ItemDataRole.UserRole + 1


class OptionCombo(QComboBox):
    """A combo box of OptionInfo values; remembers which ones it shows to rebuild only on change."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModel(QStandardItemModel(self))
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(18)
        self.shown_options: tuple[OptionInfo, ...] = ()
        self.task = ""
        #: (task, option) → what switching to it would evict, in words (read as the list opens).
        self.switch_tip: Callable[[str, str], str | None] | None = None

    def showPopup(self) -> None:
        self.refresh_plan_tips()
        super().showPopup()

    def refresh_plan_tips(self) -> None:
        """Each other option's tooltip gets the plan of switching to it, read now."""
        model = self.model()
        if self.switch_tip is not None and isinstance(model, QStandardItemModel):
            for i, option in enumerate(self.shown_options):
                item = model.item(i)
                if item is None or not option.available or option.name == self.chosen():
                    continue
                plan = self.switch_tip(self.task, option.name)
                base = _option_tip(option)
                item.setToolTip(f"{base}\n{plan}" if plan else base)

    def show_row(self, row: TaskRow) -> None:
        """Show `row`'s options with its selection; disabled while the task is busy."""
        self.task = row.task
        if row.options != self.shown_options:
            self._fill(row.options)
        self.blockSignals(True)
        self.setCurrentIndex(self.findData(row.selected, OPTION_NAME_ROLE))
        self.blockSignals(False)
        self.setEnabled(not (row.busy or row.loading))
        self.setToolTip(_option_tip(row.option))

    def _fill(self, options: tuple[OptionInfo, ...]) -> None:
        model = self.model()
        assert isinstance(model, QStandardItemModel)
        self.blockSignals(True)
        model.clear()
        for option in options:
            item = QStandardItem(option.label)
            item.setData(option.name, OPTION_NAME_ROLE)
            item.setToolTip(_option_tip(option))
            item.setEnabled(option.available)
            model.appendRow(item)
        self.blockSignals(False)
        self.shown_options = options

    def chosen(self) -> str | None:
        value = self.currentData(OPTION_NAME_ROLE)
        return value if isinstance(value, str) else None

    def shown_text(self) -> str:
        """What the closed box shows: the chosen option's name."""
        return self.chosen() or self.currentText()

    def paintEvent(self, event: QPaintEvent) -> None:
        # QComboBox.paintEvent, with the name in place of the item's whole label.
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        option.currentText = self.shown_text()
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


def _option_tip(option: OptionInfo) -> str:
    if not option.available:
        return f"Cannot load here: {option.unavailable_reason}"
    lines = [option.model_id, f"{option.framework}, device {option.device}"]
    if option.description:
        lines.append(option.description)
    return "\n".join(lines)


class OptionDelegate(QStyledItemDelegate):
    """Creates OptionCombo editors; the view keeps them open (persistent editors)."""

    #: Given to each combo box (the window sets it before the rows come).
    switch_tip: Callable[[str, str], str | None] | None = None

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: Index) -> QWidget:
        combo = OptionCombo(parent)
        combo.switch_tip = self.switch_tip
        combo.activated.connect(lambda _i, c=combo: self.commitData.emit(c))
        return combo

    def setEditorData(self, editor: QWidget, index: Index) -> None:
        row = index.data(ROW_ROLE)
        if isinstance(editor, OptionCombo) and isinstance(row, TaskRow):
            editor.show_row(row)

    def setModelData(self, editor: QWidget, model: Any, index: Index) -> None:
        if isinstance(editor, OptionCombo) and (name := editor.chosen()) is not None:
            model.setData(index, name, Qt.ItemDataRole.EditRole)

    def updateEditorGeometry(
        self, editor: QWidget, option: QStyleOptionViewItem, index: Index
    ) -> None:
        editor.setGeometry(option.rect.adjusted(2, 3, -2, -3))


__all__ = ["OPTION_NAME_ROLE", "OptionCombo", "OptionDelegate"]
