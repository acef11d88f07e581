"""The panel over the real manager's previews, thrash watch and fixes, warm-up of what fits and
Cancel: the real MainWindow, bridge and ModelManager, with the fake probe and loader of
tests/fakes.py (memory moves as the loader says, and a gate holds a load where a test wants it),
and one flow on tiny real GPT-2 models. Asserted is what a person sees: the hover's plan, the
question asked, the warning bar and its buttons, the rows, the log; and the memory held after.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractButton

from tests.fakes import FakeLoader, FakeProbe
from tests.gui.helpers import Answers, Panel, hover, until, write_config
from vramdeck.gui.formatting import fmt_bytes
from vramdeck.gui.plan_prompts import ThrashBar
from vramdeck.gui.records import TaskRow
from vramdeck.gui.task_view import RowActions
from vramdeck.manager import Ledger, ModelManager
from vramdeck.manager.config import ModelConfig
from vramdeck.manager.loaders import LoadContext

GIB = 2**30

THREE = """\
inference:
  memory_budget_gb: 1.2   # two of the 0.5 GiB models fit; a third evicts the least recently used
  evict_verify_timeout_s: 0.2
models:
  alpha:
    selected: big
    options:
      big: {model_id: fake/alpha, vram_gb: 0.5}
  beta:
    selected: big
    options:
      big: {model_id: fake/beta, vram_gb: 0.5}
  gamma:
    priority: 2           # the warm-up of what fits takes it first
    selected: big
    options:
      big: {model_id: fake/gamma, vram_gb: 0.5}
"""

TWO = """\
inference:
  memory_budget_gb: 1.0   # one of the two fits: loading one evicts the other
  evict_verify_timeout_s: 0.2
  thrash_reloads: 1       # a model's second reload within the window is thrash
models:
  alpha:
    selected: big
    options:
      big: {model_id: fake/alpha, vram_gb: 0.625}
      small: {model_id: fake/alpha-small, vram_gb: 0.25}
  beta:
    selected: big
    options:
      big: {model_id: fake/beta, vram_gb: 0.625}
"""


@dataclass
class GatedLoader(FakeLoader):
    """A FakeLoader whose load of a model id in `gates` first waits for that model's own gate
    (`FakeLoader.gate` holds every load, after its first progress report)."""

    gates: dict[str, threading.Event] = field(default_factory=dict)

    def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        gate = self.gates.get(option.model_id)
        if gate is not None:
            gate.wait(10)
        return super().load(option, ctx)


@dataclass
class Seen:
    """A running panel as a person uses it: its rows, buttons and log."""

    panel: Panel

    @property
    def manager(self) -> ModelManager:
        manager = self.panel.manager
        assert isinstance(manager, ModelManager)
        return manager

    def actions(self, task: str) -> RowActions:
        actions = self.panel.window.table.row_actions(task)
        assert actions is not None, f"no row for {task}"
        return actions

    def row(self, task: str) -> TaskRow:
        self.panel.window.flush()  # rows refresh on a short timer: read them as they are now
        return next(r for r in self.panel.window.table_model.rows() if r.task == task)

    def loaded(self) -> set[str]:
        return set(self.manager.get_loaded_models())

    def log(self, kind: str) -> list[str]:
        """The tasks of the log lines of `kind`, oldest first."""
        self.panel.window.flush()
        return [e.task for e in self.panel.window.log.model.entries() if e.kind == kind]

    async def load_by_click(self, task: str) -> None:
        """Click the row's Load and wait until the row shows the model loaded, idle."""
        click(self.actions(task).load_button)
        await until(lambda: self.settled(task, "loaded"), f"{task} is loaded")

    def settled(self, task: str, state: str) -> bool:
        row = self.row(task)
        return row.state == state and not row.busy


@dataclass
class FakePanel(Seen):
    """A panel over a real manager whose devices and loads are fakes."""

    probe: FakeProbe
    loader: FakeLoader


def click(button: QAbstractButton) -> None:
    assert button.isEnabled(), f"{button.text()} is disabled"
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


@pytest.fixture
def fake_panel(make_panel: Callable[..., Panel], tmp_path: Path) -> Callable[..., FakePanel]:
    def make(
        config: str,
        *,
        gate: threading.Event | None = None,
        gates: dict[str, threading.Event] | None = None,
    ) -> FakePanel:
        probe = FakeProbe({"cuda:0": 4.0, "cpu": 64.0})
        loader = GatedLoader(probe, gate=gate, gates=gates or {})
        manager = ModelManager(write_config(tmp_path, config), probe=probe, loaders=[loader],
                               ledger=Ledger(None))  # fmt: skip
        return FakePanel(make_panel(manager=manager), probe, loader)

    return make


def test_hovering_load_names_the_model_it_would_evict_and_the_load_evicts_it(
    fake_panel: Callable[..., FakePanel],
) -> None:
    p = fake_panel(THREE)

    async def two_loaded() -> None:
        await p.load_by_click("alpha")
        await p.load_by_click("beta")  # alpha is the least recently used now

    p.panel.run(two_loaded())
    tip = hover(p.actions("gamma").load_button)
    assert tip.startswith("Load gamma\nloading gamma would evict alpha (512.0 MiB, unloaded")
    assert "• alpha (big, 512 MiB) evicted" in tip
    assert "beta" not in tip
    assert "would evict alpha" in hover(p.actions("gamma").warm_button)
    assert p.loaded() == {"alpha", "beta"}  # a hover changes nothing

    p.panel.run(p.load_by_click("gamma"))
    assert p.loaded() == {"beta", "gamma"} and p.log("ModelEvicted") == ["alpha"]  # as planned
    assert p.probe.used["cuda:0"] == 1 * GIB  # two 0.5 GiB models; alpha's memory is back


def test_ask_before_evicting_confirms_with_the_plan_and_a_no_loads_nothing(
    fake_panel: Callable[..., FakePanel],
) -> None:
    p = fake_panel(THREE)
    prompts = p.panel.window.prompts
    prompts.ask = answers = Answers(reply=False)
    prompts.ask_toggle.setChecked(True)

    async def refused() -> None:
        await p.load_by_click("alpha")  # these two fit: not asked
        await p.load_by_click("beta")
        assert answers.asked == []
        click(p.actions("gamma").load_button)
        await until(lambda: answers.asked, "the panel asks before evicting")

    p.panel.run(refused())
    ((title, question),) = answers.asked
    assert title == "Load gamma?"
    assert "• alpha (big, 512 MiB) evicted" in question and question.endswith("Go ahead?")
    assert p.settled("gamma", "unloaded") and p.loaded() == {"alpha", "beta"}
    assert p.loader.loads == ["fake/alpha", "fake/beta"] and p.log("ModelEvicted") == []

    answers.reply = True
    p.panel.run(p.load_by_click("gamma"))
    assert len(answers.asked) == 2
    assert p.loaded() == {"beta", "gamma"} and p.log("ModelEvicted") == ["alpha"]


def test_warm_up_all_that_does_not_fit_says_so_and_warms_up_what_the_planner_picked(
    fake_panel: Callable[..., FakePanel],
) -> None:
    alpha_may_load = threading.Event()
    p = fake_panel(THREE, gates={"fake/alpha": alpha_may_load})
    window, warm_up = p.panel.window, p.panel.window.actions_.warm_up
    planned = p.manager.preview_warmup()
    assert not planned.fits and planned.what_fits == ("gamma", "alpha")  # gamma's priority first
    window.prompts.ask = answers = Answers(reply=True)  # "Warm up only what fits?" Yes

    async def warmed_up() -> None:
        warm_up.trigger()
        # gamma, loaded first, is held (in use) while alpha loads: alpha cannot evict it
        await until(lambda: p.row("gamma").state == "in use", "gamma is loaded and held")
        assert not warm_up.isEnabled()  # no second warm-up while this one runs
        alpha_may_load.set()
        await until(lambda: warm_up.isEnabled(), "the warm-up ended")

    p.panel.run(warmed_up())
    assert p.settled("gamma", "loaded") and p.settled("alpha", "loaded")  # held no longer
    ((title, question),) = answers.asked
    assert title == "The selected models do not fit together"
    assert question.startswith("loading all 3 would evict alpha for gamma\n")
    assert "Warm up only what fits (gamma, alpha)?" in question
    assert p.loader.loads == ["fake/gamma", "fake/alpha"]  # exactly the plan, in its order
    assert p.settled("beta", "unloaded") and p.log("ModelEvicted") == []


def test_answering_no_warms_up_all_evicting_what_the_question_said(
    fake_panel: Callable[..., FakePanel],
) -> None:
    p = fake_panel(THREE)
    window, warm_up = p.panel.window, p.panel.window.actions_.warm_up
    window.prompts.ask = answers = Answers(reply=False)  # "Warm up only what fits?" No

    async def warmed_up() -> None:
        warm_up.trigger()
        await until(lambda: p.log("ModelWarmedUp") == ["alpha", "beta", "gamma"], "all warmed")
        await until(warm_up.isEnabled, "the warm-up ended")

    p.panel.run(warmed_up())
    ((_, question),) = answers.asked
    assert question.startswith("loading all 3 would evict alpha for gamma\n")
    assert p.log("ModelEvicted") == ["alpha"]  # as the question said, and nothing else
    assert p.settled("alpha", "unloaded") and p.settled("beta", "loaded")
    assert p.settled("gamma", "loaded")


def thrash(p: FakePanel) -> ThrashBar:
    """Load alpha, beta, alpha, beta, alpha by clicks: each pushes the other out, and alpha's
    second reload is thrash (`thrash_reloads: 1`). The warning bar, shown."""
    bar = p.panel.window.thrash_bar

    async def loads() -> None:
        for task in ("alpha", "beta", "alpha", "beta"):
            await p.load_by_click(task)
        assert not bar.isVisible()  # one reload each: not thrash yet
        await p.load_by_click("alpha")
        await until(bar.isVisible, "the thrash warning shows")

    p.panel.run(loads())
    assert p.log("ModelEvicted") == ["alpha", "beta", "alpha", "beta"]
    return bar


def test_a_thrash_shows_the_warning_with_its_fixes_and_pin_pins(
    fake_panel: Callable[..., FakePanel],
) -> None:
    p = fake_panel(TWO)
    bar = thrash(p)
    warning = bar.text.text()
    assert "⚠ Thrashing: alpha, beta keep evicting each other (3 reloads in 600 s" in warning
    labels = [b.text() for b in bar.buttons]
    assert labels == ["Pin alpha", "Pin beta", "Raise the budget to 1.25 GiB",
                      "Switch alpha to small", "Dismiss"]  # fmt: skip
    assert "alpha and beta then fit" in bar.buttons[3].toolTip()
    assert not p.manager.is_pinned("alpha")

    click(bar.buttons[0])
    assert p.manager.is_pinned("alpha") and not p.manager.is_pinned("beta")
    assert p.row("alpha").pinned and not bar.isVisible()


def test_raising_the_budget_from_the_thrash_warning_lets_both_stay(
    fake_panel: Callable[..., FakePanel],
) -> None:
    p = fake_panel(TWO)
    bar = thrash(p)
    raise_budget = next(b for b in bar.buttons if b.text() == "Raise the budget to 1.25 GiB")
    click(raise_budget)
    assert not bar.isVisible()
    assert p.panel.window.status.toolTip() == "The memory budget is 1.25 GiB until the panel closes"
    p.panel.run(p.load_by_click("beta"))
    assert p.loaded() == {"alpha", "beta"} and len(p.log("ModelEvicted")) == 4  # none since


def test_switching_from_the_thrash_warning_lets_both_stay(
    fake_panel: Callable[..., FakePanel],
) -> None:
    p = fake_panel(TWO)
    bar = thrash(p)
    click(next(b for b in bar.buttons if b.text() == "Switch alpha to small"))

    async def both() -> None:
        await until(lambda: p.row("alpha").selected == "small", "the row shows small")
        await until(lambda: p.row("alpha").measured_bytes == GIB // 4, "small is in, big out")
        await until(lambda: p.settled("alpha", "loaded"), "the switch ended")
        await p.load_by_click("beta")

    p.panel.run(both())
    assert p.manager.get_loaded_models()["alpha"]["option"] == "small"
    assert p.loaded() == {"alpha", "beta"} and len(p.log("ModelEvicted")) == 4  # none since


def test_cancelling_a_load_in_progress_leaves_it_unloaded_and_no_memory_held(
    fake_panel: Callable[..., FakePanel], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    p = fake_panel(THREE, gate=gate)
    real_cancel = p.manager.cancel_load
    asked_to_cancel: list[str] = []

    async def cancel_load(task: str) -> bool:
        asked_to_cancel.append(task)  # the manager's own cancel runs on, in this same step
        return await real_cancel(task)

    monkeypatch.setattr(p.manager, "cancel_load", cancel_load)
    window, actions = p.panel.window, p.actions("alpha")

    async def cancelled() -> None:
        click(actions.load_button)
        # "half way" is reported before the gate: the loader waits at the gate from then on
        await until(lambda: p.row("alpha").stage == "half way", "the load is under way")
        assert actions.unload_button.text() == "Cancel" and not actions.load_button.isEnabled()
        click(actions.unload_button)
        await until(lambda: asked_to_cancel, "the cancel reaches the manager")
        gate.set()  # the model lands after the cancel: the manager frees it at once
        await until(lambda: window.status.currentMessage() == "Cancelled the load of alpha",
                    "the cancel finished")  # fmt: skip

    p.panel.run(cancelled())
    assert p.settled("alpha", "unloaded") and p.loaded() == set()
    assert actions.unload_button.text() == "Unload" and actions.load_button.isEnabled()
    assert p.loader.unloads == ["fake/alpha"] and p.probe.used["cuda:0"] == 0
    assert p.log("LoadCancelled") == ["alpha"] and p.log("ModelLoaded") == []


def test_on_tiny_real_models_the_hovered_plan_is_what_the_load_does(panel: Panel) -> None:
    seen = Seen(panel)

    async def two_loaded() -> None:
        await seen.load_by_click("alpha")  # tiny-a, ≈ 0.5 MiB
        await seen.load_by_click("beta")  # tiny-b, ≈ 1.8 MiB: the budget (2.6 MiB) holds both

    panel.run(two_loaded())
    alpha = seen.row("alpha")
    assert alpha.measured_bytes and alpha.measured_is_live
    tip = hover(seen.actions("gamma").load_button)
    assert f"• alpha (small, {fmt_bytes(alpha.measured_bytes)}) evicted" in tip
    assert "beta" not in tip

    panel.run(seen.load_by_click("gamma"))
    assert seen.loaded() == {"beta", "gamma"} and seen.log("ModelEvicted") == ["alpha"]
    panel.window.flush()
    evicted = [e for e in panel.window.log.model.entries() if e.kind == "ModelEvicted"]
    assert [e.bytes for e in evicted] == [alpha.measured_bytes]  # the bytes the plan named


def test_a_warm_up_of_many_says_its_plan_in_lines_that_fit_the_screen(
    fake_panel: Callable[..., FakePanel],
) -> None:
    # Twenty tasks, two fit: warming up all evicts eighteen. Hovering Warm up all names the
    # first pushes and counts the rest, and lists eight of the moves, not eighteen lines.
    tasks = "".join(
        f"  t{i:02d}: {{options: {{m: {{model_id: fake/t{i:02d}, vram_gb: 0.5}}}}}}\n"
        for i in range(20)
    )
    p = fake_panel(THREE.split("models:")[0] + "models:\n" + tasks)
    warm_up = p.panel.window.actions_.warm_up
    base = warm_up.toolTip()
    warm_up.hover()  # the action's hovered signal: the plan is read then
    summary, *moves = warm_up.toolTip().removeprefix(base + "\n").splitlines()
    assert summary.startswith("loading all 20 would evict t00 for t02, t01 for t03, ")
    assert summary.endswith("t04 for t06 and 13 more evictions")
    assert len(moves) == 9 and moves[0].startswith("• t00") and moves[-1] == "• … and 10 more"
    assert len(p.manager.preview_warmup().evictions) == 18  # the manager's plan has them all
