"""Flows through the real widgets, on the real manager loading tiny real GPT-2 models."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QComboBox

from tests.gui.helpers import Panel, until, write_config
from vramdeck.gui.task_table import Column


def combo(panel: Panel, task: str) -> QComboBox:
    widget = panel.window.table.option_combo(task)
    assert isinstance(widget, QComboBox)
    return widget


def row(panel: Panel, task: str):
    panel.window.flush()  # rows are refreshed on a short timer; read them as they are now
    return next(r for r in panel.window.table_model.rows() if r.task == task)


def settled(panel: Panel, task: str, state: str) -> bool:
    """The row shows `state` and no command for it is running (its combo box is enabled)."""
    current = row(panel, task)
    return current.state == state and not current.busy and combo(panel, task).isEnabled()


def click_load(panel: Panel, task: str) -> None:
    actions = panel.window.table.row_actions(task)
    assert actions is not None and actions.load_button.isEnabled()
    QTest.mouseClick(actions.load_button, Qt.MouseButton.LeftButton)


def click_unload(panel: Panel, task: str) -> None:
    actions = panel.window.table.row_actions(task)
    assert actions is not None and actions.unload_button.isEnabled()
    QTest.mouseClick(actions.unload_button, Qt.MouseButton.LeftButton)


def log_entries(panel: Panel) -> list:
    panel.window.flush()
    return panel.window.log.model.entries()


def log_kinds(panel: Panel) -> list[tuple[str, str]]:
    return [(e.kind, e.task) for e in log_entries(panel)]


def test_choosing_another_option_switches_the_loaded_model(panel: Panel) -> None:
    async def flow() -> None:
        click_load(panel, "alpha")
        await until(lambda: settled(panel, "alpha", "loaded"), "alpha is loaded")
        box = combo(panel, "alpha")
        assert box.currentText().startswith("small")
        QTest.keyClick(box, Qt.Key.Key_Down)  # small → large, as a person would
        await until(lambda: row(panel, "alpha").selected == "large", "the row shows large")
        await until(lambda: settled(panel, "alpha", "loaded"), "large is loaded")

    panel.run(flow())
    assert panel.manager.get_loaded_models()["alpha"]["option"] == "large"
    assert combo(panel, "alpha").currentText().startswith("large")
    assert row(panel, "alpha").measured_bytes > 1024**2  # tiny-b: ≈ 1.8 MiB, tiny-a ≈ 0.5 MiB
    assert ("SelectionChanged", "alpha") in log_kinds(panel)
    assert [k for k, t in log_kinds(panel) if t == "alpha"].count("ModelLoaded") == 2
    assert panel.window.isWindowModified()  # the selection differs from the file now


def test_options_that_cannot_load_are_disabled_with_the_reason(panel: Panel) -> None:
    box = combo(panel, "alpha")
    labels = [box.itemText(i) for i in range(box.count())]
    assert labels[0] == "small · 0.5 MiB · fast"  # MiB below 1 GiB, not "0.00 GiB"
    served = labels.index(next(t for t in labels if t.startswith("served")))
    model = box.model()
    assert isinstance(model, QStandardItemModel)  # the panel's combo boxes keep items
    item = model.item(served)
    assert not item.isEnabled()
    assert "Cannot load here" in item.toolTip() and "vLLM" in item.toolTip()


def test_warm_up_all_loads_the_rows_and_shows_the_eviction(panel: Panel) -> None:
    window = panel.window

    async def flow() -> None:
        window.actions_.warm_up.trigger()
        await until(lambda: not window.actions_.warm_up.isEnabled(), "warm-up is running")
        await until(lambda: window.actions_.warm_up.isEnabled(), "warm-up is done", 60)
        await until(lambda: row(panel, "gamma").state == "loaded", "gamma is loaded")

    panel.run(flow(), timeout=90)
    states = {r.task: r.state for r in window.table_model.rows()}
    # a (0.5 MiB) + b (1.8 MiB) fit the 2.6 MiB budget; c needs room: alpha, least recent, goes.
    assert states == {"alpha": "unloaded", "beta": "loaded", "gamma": "loaded",
                      "remote": "external"}  # fmt: skip
    evicted = [e for e in log_entries(panel) if e.kind == "ModelEvicted"]
    assert [e.task for e in evicted] == ["alpha"]
    assert evicted[0].reason.startswith("room for gamma: idle ")  # and why (issue 12)
    window.chart.redraw()
    tips = [p.data() for p in window.chart.markers.points()]
    assert any(t.startswith("Evicted: alpha") for t in tips)
    assert sum(t.startswith("Loaded:") for t in tips) == 3  # the API's load has no device


def test_unloading_makes_memory_fall(panel: Panel) -> None:
    chart = panel.window.chart
    history = chart.history

    def manager_bytes() -> float:
        latest = history.devices["cpu"].latest
        return latest.manager if latest else 0

    async def flow() -> None:
        click_load(panel, "beta")
        await until(lambda: manager_bytes() > 1024**2, "a sample shows beta's memory")
        await until(lambda: settled(panel, "beta", "loaded"), "the row shows beta loaded")
        click_unload(panel, "beta")
        await until(lambda: manager_bytes() == 0, "a sample shows the memory freed")
        await until(lambda: ("ModelUnloaded", "beta") in log_kinds(panel), "the unload is logged")

    panel.run(flow())
    chart.redraw()
    _, beta = chart.bands["beta"].getData()
    assert beta.max() > 1.0 and beta[-1] == 0  # MiB: up while loaded, down after
    assert row(panel, "beta").state == "unloaded"
    unloaded = next(e for e in log_entries(panel) if e.kind == "ModelUnloaded")
    assert unloaded.task == "beta" and unloaded.bytes > 1024**2 and unloaded.reason == "user"


@pytest.mark.allow_log(r"loading alpha \(.*missing\) failed")
def test_a_failing_load_shows_failed_and_the_panel_stays_usable(panel: Panel) -> None:
    window = panel.window

    async def flow() -> None:
        QTest.keyClick(combo(panel, "alpha"), Qt.Key.Key_Down)  # small → large
        await until(lambda: row(panel, "alpha").selected == "large", "large is selected")
        await until(lambda: settled(panel, "alpha", "unloaded"), "the switch is done")
        QTest.keyClick(combo(panel, "alpha"), Qt.Key.Key_Down)  # large → broken
        await until(lambda: row(panel, "alpha").selected == "broken", "broken is selected")
        await until(lambda: settled(panel, "alpha", "unloaded"), "the switch is done")
        click_load(panel, "alpha")
        await until(lambda: settled(panel, "alpha", "failed"), "the row shows failed")
        QTest.keyClick(combo(panel, "alpha"), Qt.Key.Key_Up)  # back to large
        await until(lambda: row(panel, "alpha").selected == "large", "large is selected")
        await until(lambda: settled(panel, "alpha", "unloaded"), "the switch is done")
        click_load(panel, "alpha")
        await until(lambda: row(panel, "alpha").state == "loaded", "large is loaded")

    panel.run(flow())
    assert window.banner.isVisible()
    assert "Could not load alpha" in window.banner.title.text()
    assert "missing" in window.banner.message.text()
    assert ("LoadFailed", "alpha") in log_kinds(panel)


def test_pinning_from_the_table(panel: Panel) -> None:
    model = panel.window.table_model
    index = model.index(model.row_of("beta"), Column.PINNED)
    assert (
        model.setData(index, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole) is False
    )
    assert panel.manager.tasks["beta"].pinned
    assert row(panel, "beta").pinned
    assert ("PinChanged", "beta") in log_kinds(panel)


def test_the_budget_view_shows_what_does_not_fit(panel: Panel) -> None:
    window = panel.window

    async def flow() -> None:
        window.actions_.validate.trigger()
        await until(lambda: window.budget.report is not None, "the budget was planned")

    panel.run(flow())
    report = window.budget.report
    assert report is not None and not report.valid  # 2.8 MiB of models, 2.6 MiB allowed
    assert "do not fit together on cpu" in window.budget.verdict.text()
    assert set(window.budget.bars.plans[0].tasks) == {"alpha", "beta", "gamma"}
    assert report.external_tasks == ("remote",)


def test_a_bad_config_on_reload_keeps_the_last_good_one(panel: Panel, tmp_path: Path) -> None:
    window = panel.window
    bad = write_config(tmp_path, "models: [not, a, mapping]\n", "bad.yaml")
    window.choose_config_path = lambda: str(bad)

    async def flow() -> None:
        window.actions_.open_config.trigger()
        await until(window.banner.isVisible, "the error banner shows")
        await until(lambda: window.actions_.open_config.isEnabled(), "the reload ended")

    panel.run(flow())
    assert "bad.yaml" in window.banner.message.text()
    assert "still using models.yaml" in window.banner.title.text()
    assert [r.task for r in window.table_model.rows()] == ["alpha", "beta", "gamma", "remote"]
    assert window.windowTitle().startswith("models.yaml")
    assert ("Error", "") in log_kinds(panel)


def test_closing_unloads_everything_and_runs_the_managers_shutdown(
    panel: Panel, qapp: QApplication
) -> None:
    calls: list[str] = []
    original = panel.manager.shutdown

    async def shutdown() -> None:
        calls.append("shutdown")
        await original()

    panel.manager.shutdown = shutdown
    progress: list[tuple[int, int]] = []
    panel.bridge.shutdownProgress.connect(lambda done, total: progress.append((done, total)))

    async def flow() -> int:
        click_load(panel, "alpha")
        click_load(panel, "beta")
        await until(lambda: len(panel.manager.loaded_models) == 2, "two models are loaded")
        panel.window.close()  # the first close asks; the window stays until the models are gone
        assert panel.window.isVisible()
        await until(lambda: not panel.window.isVisible(), "the window closed")
        # Qt emits lastWindowClosed from exec() only; the app runs exec(), this test does not.
        qapp.lastWindowClosed.emit()
        return await panel.session.serve()

    assert panel.run(flow()) == 0
    assert calls == ["shutdown"]
    assert not panel.manager.loaded_models
    assert progress[0] == (0, 2) and progress[-1] == (2, 2)
    assert not panel.window.isVisible()
    reasons = {e.reason for e in log_entries(panel) if e.kind == "ModelUnloaded"}
    assert reasons == {"shutdown"}
