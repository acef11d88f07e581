"""The panel over this round's manager API (residency, previews, thrash fixes, warm-up, Cancel):
a real ModelManager loading real tiny models, whose contract methods answer as scripted here and
record their calls. The scripted answers are the manager's own types (Preview, Fix, WarmUp,
HostTierStatus), so they cannot drift from what the real methods return; the real methods
themselves drive the panel in test_panel_real_manager.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.gui.helpers import Answers, Panel, hover, until
from vramdeck.gui.task_table import Column
from vramdeck.manager import Ledger, ModelManager
from vramdeck.manager.events import Thrashing
from vramdeck.manager.preview import PlannedEviction, Preview
from vramdeck.manager.residency import HostTierStatus, Residency
from vramdeck.manager.status import TaskState, TaskStatus
from vramdeck.manager.thrash import Fix, FixKind
from vramdeck.manager.warmup import WarmUp

MIB = 2**20


class RoundManager(ModelManager):
    """A real manager; the contract's methods answer as scripted and record their calls."""

    def __init__(self, config: Path) -> None:
        super().__init__(config, ledger=Ledger(None))
        self.calls: list[tuple[str, Any]] = []
        self.plan = Preview(True, summary="fits as things are")
        self.parked: dict[str, float] = {}  # task → restore_s, shown as "in RAM"
        self.loading_now: set[str] = set()
        self.first_inference: dict[str, float] = {}

    def preview_load(self, task: str) -> Preview:
        self.calls.append(("preview_load", task))
        return self.plan

    def preview_switch(self, task: str, option: str) -> Preview:
        self.calls.append(("preview_switch", (task, option)))
        return self.plan

    def preview_warmup(self) -> Preview:
        self.calls.append(("preview_warmup", None))
        return self.plan

    async def warmup_what_fits(self) -> list[str]:
        self.calls.append(("warmup_what_fits", None))
        for task in self.plan.what_fits:
            await self.load_model(task)
        return list(self.plan.what_fits)

    async def warm_up(self, task: str) -> WarmUp:
        self.calls.append(("warm_up", task))
        await self.load_model(task)
        self.first_inference[task] = 0.085
        return WarmUp(0.2, 0.085)

    async def cancel_load(self, task: str) -> bool:
        self.calls.append(("cancel_load", task))
        self.loading_now.discard(task)
        return True

    def thrash_fixes(self, tasks: Sequence[str]) -> tuple[Fix, ...]:
        return (
            Fix(FixKind.PIN, tasks[0], None, None, f"keep {tasks[0]} loaded"),
            Fix(FixKind.RAISE_BUDGET, tasks[0], None, 8 * MIB, "room for both"),
            Fix(FixKind.SWITCH, tasks[0], "small", None, "a smaller option fits beside"),
        )

    def set_memory_budget(self, budget_bytes: int | None) -> None:
        self.calls.append(("set_memory_budget", budget_bytes))

    def host_tier_status(self) -> HostTierStatus:
        return HostTierStatus(False, 0, 0, "no GPU: the device is host RAM")

    def task_status(self, task_type: str, *, primary_device: str = "cpu") -> TaskStatus:
        status = super().task_status(task_type, primary_device=primary_device)
        if task_type in self.loading_now:
            status = dataclasses.replace(
                status, state=TaskState.LOADING, progress=None, stage="starting server"
            )
        residency = Residency.DEVICE if status.is_loaded else Residency.OFF
        if task_type in self.parked:
            residency = Residency.HOST
        return dataclasses.replace(status, residency=residency,
                                   restore_s=self.parked.get(task_type),
                                   first_inference_s=self.first_inference.get(task_type))  # fmt: skip


@pytest.fixture
def round_panel(make_panel: Callable[..., Panel], gui_config: Path) -> Panel:
    return make_panel(manager=RoundManager(gui_config))


def row(panel: Panel, task: str):  # -> TaskRow
    panel.window.flush()  # the rows changed since are read now
    return panel.window.table_model.rows()[panel.window.table_model.row_of(task)]


def cell(panel: Panel, task: str, column: Column) -> str:
    model = panel.window.table_model
    return str(model.index(model.row_of(task), column).data())


EVICTING = Preview(
    False,
    (PlannedEviction("beta", "large", "cpu", int(1.8 * MIB), Residency.HOST, 0.4),
     PlannedEviction("gamma", "small", "cpu", MIB // 2, Residency.OFF, None)),
    summary="loading alpha would park beta and evict gamma",
    what_fits=("alpha",),
)  # fmt: skip


def test_hovering_load_shows_what_would_be_evicted(round_panel: Panel) -> None:
    round_panel.manager.plan = EVICTING
    actions = round_panel.window.table.row_actions("alpha")
    tip = hover(actions.load_button)
    assert "loading alpha would park beta and evict gamma" in tip
    assert "beta (large, 1.8 MiB) parked in RAM, back in 400 ms" in tip
    assert "gamma (small, 0.5 MiB) evicted" in tip
    assert ("preview_load", "alpha") in round_panel.manager.calls
    assert "would park beta" in hover(actions.warm_button)


def test_the_residency_column_says_where_and_how_long_to_bring_back(round_panel: Panel) -> None:
    round_panel.manager.parked["beta"] = 0.4
    round_panel.window._refresh_rows()
    assert cell(round_panel, "beta", Column.RESIDENCY) == "in RAM · 400 ms"
    assert cell(round_panel, "alpha", Column.RESIDENCY) == "off"
    assert cell(round_panel, "remote", Column.RESIDENCY) == "API"  # holds no memory here


def test_ask_before_evicting_confirms_and_can_refuse(round_panel: Panel) -> None:
    window, manager = round_panel.window, round_panel.manager
    manager.plan = EVICTING
    window.prompts.ask = answers = Answers(reply=False)
    window.prompts.ask_toggle.setChecked(True)
    assert not round_panel.run(window.prompts.load("alpha"))
    assert answers.asked and "beta (large, 1.8 MiB) parked in RAM" in answers.asked[0][1]
    assert row(round_panel, "alpha").state == "unloaded"
    answers.reply = True
    assert round_panel.run(window.prompts.load("alpha"))
    assert row(round_panel, "alpha").state == "loaded"


def test_evicting_loads_go_ahead_unasked_by_default(round_panel: Panel) -> None:
    window = round_panel.window
    round_panel.manager.plan = EVICTING
    window.prompts.ask = lambda title, question: pytest.fail(f"asked: {question}")
    assert not window.prompts.ask_toggle.isChecked()
    assert round_panel.run(window.prompts.load("gamma"))


def test_warm_up_all_that_does_not_fit_offers_what_fits(round_panel: Panel) -> None:
    window, manager = round_panel.window, round_panel.manager
    manager.plan = EVICTING
    window.prompts.ask = answers = Answers(reply=True)
    round_panel.run(window.prompts.warm_up_all())
    assert answers.asked[0][0] == "The selected models do not fit together"
    assert "Warm up only what fits (alpha)?" in answers.asked[0][1]
    assert ("warmup_what_fits", None) in manager.calls
    assert row(round_panel, "alpha").state == "loaded"
    assert row(round_panel, "beta").state == "unloaded"  # not warmed: it does not fit


def test_warm_up_per_row_shows_the_first_inference(round_panel: Panel) -> None:
    actions = round_panel.window.table.row_actions("gamma")
    assert actions.warm_button.isEnabled()
    actions.warm_button.click()
    round_panel.run(until(lambda: ("warm_up", "gamma") in round_panel.manager.calls, "warm-up"))
    round_panel.run(until(lambda: row(round_panel, "gamma").first_inference_s, "measured"))
    round_panel.window.flush()
    assert cell(round_panel, "gamma", Column.LOAD_TIME).endswith(" + 85 ms")


def test_a_load_in_flight_offers_cancel(round_panel: Panel) -> None:
    round_panel.manager.loading_now.add("gamma")
    round_panel.window._refresh_rows()
    actions = round_panel.window.table.row_actions("gamma")
    assert actions.unload_button.text() == "Cancel" and actions.unload_button.isEnabled()
    assert not actions.load_button.isEnabled()
    assert cell(round_panel, "gamma", Column.STATE) == "loading · starting server"
    actions.unload_button.click()
    round_panel.run(until(lambda: ("cancel_load", "gamma") in round_panel.manager.calls, "cancel"))
    round_panel.window._refresh_rows()
    assert actions.unload_button.text() == "Unload"


def test_a_thrash_shows_a_warning_with_one_click_fixes(round_panel: Panel) -> None:
    window, manager = round_panel.window, round_panel.manager
    manager.events.emit(Thrashing(tasks=("alpha", "beta"), reloads=6, window_s=60.0,
                                  seconds_lost=4.2))  # fmt: skip
    bar = window.thrash_bar
    assert bar.isVisible()
    assert "alpha, beta keep evicting each other (6 reloads in 60 s, 4.2 s lost)" in bar.text.text()
    labels = [b.text() for b in bar.buttons]
    assert labels == ["Pin alpha", "Raise the budget to 8.0 MiB", "Switch alpha to small",
                      "Dismiss"]  # fmt: skip
    bar.buttons[0].click()
    assert manager.tasks["alpha"].pinned and not bar.isVisible()
    window.prompts.apply_fix(window.bridge.thrash_fixes(("alpha",))[1])
    assert ("set_memory_budget", 8 * MIB) in manager.calls


def test_the_budget_view_says_why_the_host_tier_is_off(round_panel: Panel) -> None:
    round_panel.run(round_panel.bridge.plan_budget())
    assert (
        "host-RAM tier off: no GPU: the device is host RAM"
        in round_panel.window.budget_legend.text()
    )


def test_park_restore_sleep_and_wake_leave_their_own_markers() -> None:
    from vramdeck.gui.chart_parts import MARKER_LEGEND, MARKER_STYLE
    from vramdeck.gui.memory_history import MemoryHistory
    from vramdeck.gui.records import LogEntry

    history = MemoryHistory(history_s=10, rate_hz=10)
    steps = [("ModelLoaded", "a", 3 * MIB), ("ModelLoaded", "b", MIB), ("ModelParked", "a", 3 * MIB),
             ("ModelRestored", "a", 3 * MIB), ("ModelSlept", "b", MIB), ("ModelWoken", "b", MIB)]  # fmt: skip
    for i, (kind, task, size) in enumerate(steps):
        history.add_event(
            LogEntry(at=1000.0 + i, kind=kind, task=task, device="cuda:0", bytes=size)
        )
    markers = history.markers_since("cuda:0", 0)
    assert [m.kind for m in markers] == ["load", "load", "park", "restore", "sleep", "wake"]
    # drawn at what the device's models held: a park leaves, a restore comes back
    assert [m.bytes_then // MIB for m in markers] == [3, 4, 4, 4, 4, 4]
    unloaded = history.add_event(LogEntry(at=1010.0, kind="ModelUnloaded", task="a",
                                          device="cuda:0", bytes=3 * MIB))  # fmt: skip
    assert unloaded is not None and unloaded.bytes_then == 4 * MIB
    for kind in ("park", "restore", "sleep", "wake"):
        assert kind in MARKER_STYLE and kind in MARKER_LEGEND  # every symbol explained


def test_a_load_of_unknown_progress_sweeps_and_stops_when_done(round_panel: Panel) -> None:
    from vramdeck.gui.state_delegate import SWEEP_S, sweep_span

    table = round_panel.window.table
    assert not table._sweep.isActive()
    round_panel.manager.loading_now.add("gamma")
    round_panel.window._refresh_rows()
    assert table._sweep.isActive()  # "starting server": no fraction, so the bar sweeps
    round_panel.manager.loading_now.discard("gamma")
    round_panel.window._refresh_rows()
    assert not table._sweep.isActive()
    # the chunk enters at the left, crosses, and leaves at the right once a sweep
    assert sweep_span(100, 0.0) == (-25, 25)
    assert sweep_span(100, SWEEP_S / 2)[0] == 37
    assert sweep_span(100, SWEEP_S * 0.999)[0] >= 99


def test_the_option_list_shows_what_a_switch_would_evict(round_panel: Panel) -> None:
    round_panel.manager.plan = EVICTING
    combo = round_panel.window.table.option_combo("alpha")
    combo.refresh_plan_tips()
    tips = {o.name: combo.model().item(i).toolTip() for i, o in enumerate(combo.shown_options)}
    large = tips["large"]
    assert "beta (large, 1.8 MiB) parked in RAM, back in 400 ms" in large
    assert ("preview_switch", ("alpha", "large")) in round_panel.manager.calls
    assert ("preview_switch", ("alpha", "small")) not in round_panel.manager.calls  # selected


def test_a_rows_menu_copies_its_servers_url_and_cancels_its_load(round_panel: Panel) -> None:
    from PySide6.QtGui import QGuiApplication

    table = round_panel.window.table
    served = dataclasses.replace(row(round_panel, "alpha"), server_url="http://127.0.0.1:40001/v1")
    menu = table.row_menu(served)
    copy, cancel = menu.actions()
    assert copy.isEnabled() and not cancel.isEnabled()  # not loading: nothing to cancel
    copy.trigger()
    assert QGuiApplication.clipboard().text() == "http://127.0.0.1:40001/v1"
    menu.deleteLater()
    quiet = table.row_menu(row(round_panel, "gamma"))
    assert not quiet.actions()[0].isEnabled()  # no server of its own
    quiet.deleteLater()
    model = round_panel.window.table_model
    tip = model.index(model.row_of("alpha"), Column.DEVICE).data(3)
    assert tip is None or "Its server" not in tip
    model.update_row(served)
    assert "Its server: http://127.0.0.1:40001/v1" in model.index(
        model.row_of("alpha"), Column.DEVICE
    ).data(3)
