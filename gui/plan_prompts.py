"""Previews before acting: what a Load, a switch or Warm up all would evict (tooltips on hover),
"ask before evicting" (off by default), Warm up all on a selection that does not fit (offers
"Warm up what fits"), and a Thrashing warning with one-click fixes.

The window's load / switch / warm-up commands go through here; the plans come from the bridge
(the manager's previews: sync and cheap, they change nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from PySide6.QtCore import QObject, QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QWidget

from . import settings as saved
from .bridge import ManagerBridge
from .formatting import fmt_bytes
from .records import FixAction, PlanPreview, ThrashFix

#: Asks the person: (title, question) → yes. Tests replace it.
Ask = Callable[[str, str], bool]
FIX_VERBS = {
    FixAction.PIN: "Pin",
    FixAction.RAISE_BUDGET: "Raise the budget",
    FixAction.SWITCH: "Switch",
}


def _ask_in_a_box(title: str, question: str) -> bool:
    answer = QMessageBox.question(None, title, question)
    return answer == QMessageBox.StandardButton.Yes


def plan_words(plan: PlanPreview | None) -> str | None:
    """A preview as a tooltip: what it would move, or that it fits as things are."""
    if plan is None:
        return None
    if not plan.moves:
        return plan.summary or ("Fits: nothing is evicted" if plan.fits else "Does not fit")
    return plan.tooltip()


class ThrashBar(QWidget):
    """A warning row: models reload each other; buttons that stop it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("thrashBar")
        self.setStyleSheet("#thrashBar { background: #fff4e5; border: 1px solid #f0b429; }")
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(8, 4, 8, 4)
        self._layout.addWidget(self.text, 1)
        self.buttons: list[QPushButton] = []
        self.hide()

    def show_fixes(
        self, tasks: tuple[str, ...], cost: str, fixes: tuple[ThrashFix, ...],
        apply: Callable[[ThrashFix], None],
    ) -> None:  # fmt: skip
        for button in self.buttons:
            button.deleteLater()
        self.buttons = []
        self.text.setText(f"⚠ Thrashing: {', '.join(tasks)} keep evicting each other ({cost})")
        for fix in fixes:
            button = QPushButton(_fix_label(fix), self)
            button.setToolTip(fix.summary)
            button.clicked.connect(lambda _=False, f=fix: self._apply(apply, f))
            self._layout.addWidget(button)
            self.buttons.append(button)
        dismiss = QPushButton("Dismiss", self)
        dismiss.clicked.connect(self.hide)
        self._layout.addWidget(dismiss)
        self.buttons.append(dismiss)
        self.show()

    def _apply(self, apply: Callable[[ThrashFix], None], fix: ThrashFix) -> None:
        apply(fix)
        self.hide()


def _fix_label(fix: ThrashFix) -> str:
    if fix.kind is FixAction.PIN:
        return f"Pin {fix.task}"
    if fix.kind is FixAction.RAISE_BUDGET and fix.budget_bytes is not None:
        return f"Raise the budget to {fmt_bytes(fix.budget_bytes)}"
    if fix.kind is FixAction.SWITCH and fix.option:
        return f"Switch {fix.task} to {fix.option}"
    return FIX_VERBS[fix.kind]


class PlanPrompts(QObject):
    """The window's preview-aware commands and the thrash warning."""

    def __init__(
        self, bridge: ManagerBridge, thrash_bar: ThrashBar, settings: QSettings | None,
        parent: QObject | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self._bridge, self._bar, self._settings = bridge, thrash_bar, settings
        self.ask: Ask = _ask_in_a_box
        self._jobs: set[asyncio.Future[bool]] = set()
        self.ask_toggle = QAction("Ask before evicting", self)
        self.ask_toggle.setCheckable(True)
        self.ask_toggle.setChecked(saved.flag(settings, saved.ASK_BEFORE_EVICTING, False))
        self.ask_toggle.setStatusTip("Confirm a load, switch or warm-up that would evict a model")
        self.ask_toggle.toggled.connect(self._remember_ask)
        bridge.thrashing.connect(self._on_thrashing)

    def _remember_ask(self, on: bool) -> None:
        if self._settings is not None:
            self._settings.setValue(saved.ASK_BEFORE_EVICTING, on)

    # ----------------------------------------------------------------- tooltips

    def plan_tip(self, task: str, what: str) -> str | None:
        """The Load / Warm up buttons' hover: what loading `task` would do."""
        return plan_words(self._bridge.preview_load(task))

    def switch_tip(self, task: str, option: str) -> str | None:
        return plan_words(self._bridge.preview_switch(task, option))

    def follow_warm_up_hover(self, action: QAction) -> None:
        """Warm up all's tooltip says what warming up the selection would do, read at hover."""
        base = action.toolTip()
        action.hovered.connect(lambda: action.setToolTip(
            "\n".join(p for p in (base, plan_words(self._bridge.preview_warmup())) if p)
        ))  # fmt: skip

    # ----------------------------------------------------------------- commands

    def _may(self, plan: PlanPreview | None, action: str) -> bool:
        """With "ask before evicting" on, an action that evicts asks first."""
        if not self.ask_toggle.isChecked() or plan is None or not plan.moves:
            return True
        return self.ask(f"{action}?", f"{plan.tooltip()}\n\nGo ahead?")

    async def load(self, task: str) -> bool:
        if not self._may(self._bridge.preview_load(task), f"Load {task}"):
            return False
        return await self._bridge.load(task)

    async def warm_up(self, task: str) -> float | None:
        if not self._may(self._bridge.preview_load(task), f"Warm up {task}"):
            return None
        return await self._bridge.warm_up_task(task)

    async def select(self, task: str, option: str) -> bool:
        plan = self._bridge.preview_switch(task, option)
        if not self._may(plan, f"Switch {task} to {option}"):
            return False
        return await self._bridge.select(task, option)

    async def warm_up_all(self) -> None:
        """Warm up every selected model; when they do not fit together, say so and offer to
        warm up what fits instead."""
        plan = self._bridge.preview_warmup()
        if plan is not None and not plan.fits:
            fits = ", ".join(plan.what_fits) or "none of them"
            question = (
                f"{plan.summary}\n\nWarm up only what fits ({fits})?\n"
                "No warms up all of them, evicting as it goes."
            )
            if self.ask("The selected models do not fit together", question):
                await self._bridge.warm_up_what_fits()
            else:
                await self._bridge.warm_up(force=True)
            return
        if self._may(plan, "Warm up all"):
            await self._bridge.warm_up(force=True)

    # ----------------------------------------------------------------- thrash

    def _on_thrashing(self, tasks: tuple[str, ...], cost: str) -> None:
        self._bar.show_fixes(tasks, cost, self._bridge.thrash_fixes(tasks), self.apply_fix)

    def apply_fix(self, fix: ThrashFix) -> None:
        if fix.kind is FixAction.PIN:
            self._bridge.set_pinned(fix.task, True)
        elif fix.kind is FixAction.RAISE_BUDGET and fix.budget_bytes is not None:
            self._bridge.raise_budget(fix.budget_bytes)
        elif fix.kind is FixAction.SWITCH and fix.option:
            job = asyncio.ensure_future(self._bridge.select(fix.task, fix.option))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)


__all__ = ["PlanPrompts", "ThrashBar", "plan_words"]
