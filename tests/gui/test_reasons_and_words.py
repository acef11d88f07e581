"""Words a person reads: reasons in the row, log reasons elided in the middle, status messages
that fit, the budget's colours named, model folders with their variables expanded."""

from __future__ import annotations

import csv
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics

from tests.gui.helpers import Panel, until
from tests.gui.test_table_and_log import OPTIONS, row
from vramdeck.gui.budget_legend import legend_html
from vramdeck.gui.event_log import EventLog
from vramdeck.gui.formatting import expand_vars
from vramdeck.gui.log_export import write_csv
from vramdeck.gui.palette import ERROR_COLOR, task_color
from vramdeck.gui.records import BudgetReport, DevicePlan, LogEntry
from vramdeck.gui.status_bar import fit_message
from vramdeck.gui.task_table import Column, TaskTableModel, state_text


def test_why_an_option_cannot_load_is_in_the_row(qtbot) -> None:
    unavailable = row(selected="served", state="unavailable", failure="no vllm")
    assert state_text(unavailable) == "cannot load here: no vllm"
    assert state_text(row(state="failed", failure="out of memory")) == "failed: out of memory"
    model = TaskTableModel()
    model.set_rows([unavailable])
    assert model.index(0, Column.STATE).data() == "cannot load here: no vllm"
    assert model.index(0, Column.STATE).data(Qt.ItemDataRole.ToolTipRole) == state_text(unavailable)
    assert OPTIONS[1].label == "served · 18.00 GiB · fast"


def test_the_log_elides_reasons_in_the_middle_and_keeps_them_room(qtbot) -> None:
    log = EventLog()
    qtbot.addWidget(log)
    log.resize(720, 300)  # the log beside the chart at 1366x768
    log.show()
    reason = "room for embeddings (the least recently used model without a pin)"
    log.add_entry(LogEntry(at=1.0, kind="ModelEvicted", task="text_generation", reason=reason))
    log.flush()
    assert log.table.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert log.table.columnWidth(6) >= 160  # Task and Model gave up width for it
    index = log.proxy.index(0, 6)
    assert index.data(Qt.ItemDataRole.ToolTipRole) == reason


def test_a_long_status_message_is_shortened_to_fit(qtbot) -> None:
    metrics = QFontMetrics(QFont())
    text = "Saved the selections to /home/me/configs/models.yaml (the previous file is " \
           "/home/me/configs/models.yaml.bak)"  # fmt: skip
    short = fit_message(text, metrics.horizontalAdvance(text) - 10, metrics)
    assert short == "Saved the selections to models.yaml (the previous file is models.yaml.bak)"
    assert fit_message("Loaded x", 400, metrics) == "Loaded x"
    assert metrics.horizontalAdvance(fit_message(text, 120, metrics)) <= 120


def test_the_budget_legend_names_each_colour() -> None:
    plan = DevicePlan("cuda:0", "GPU", 10, 4, {"beta": 3, "alpha": 2})
    html = legend_html(BudgetReport(False, (plan,)), ["alpha", "beta"])
    assert html.index("alpha") < html.index("beta")  # config order
    assert task_color("alpha", ["alpha", "beta"]) in html
    assert "budget" in html and ERROR_COLOR in html and "over&nbsp;the&nbsp;budget" in html
    assert "over" not in legend_html(BudgetReport(True, (plan,)), ["alpha", "beta"])


def test_variables_are_expanded_in_the_export_but_not_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VRAMDECK_DEMO_MODELS", "/cache/demo")
    monkeypatch.setenv("MY_API_KEY", "sk-secret")
    assert expand_vars("${VRAMDECK_DEMO_MODELS}/gpt2") == "/cache/demo/gpt2"
    assert expand_vars("$MY_API_KEY ${UNSET_VAR}") == "$MY_API_KEY ${UNSET_VAR}"
    entry = LogEntry(at=1.0, kind="ModelLoaded", model_id="${VRAMDECK_DEMO_MODELS}/gpt2")
    write_csv([entry], tmp_path / "log.csv")
    rows = list(csv.DictReader((tmp_path / "log.csv").open(encoding="utf-8")))
    assert rows[0]["model_id"] == "/cache/demo/gpt2"


def test_reloading_a_broken_file_says_reload_not_still_using_itself(
    panel: Panel, tmp_path: Path
) -> None:
    window = panel.window
    path = panel.bridge.config_path
    path.write_text("models: [broken\n", encoding="utf-8")

    async def flow() -> None:
        window.actions_.reload_config.trigger()
        await until(window.banner.isVisible, "the error banner shows")

    panel.run(flow())
    title = window.banner.title.text()
    assert f"Could not reload {path.name}; the version read before stays in force" in title
    assert "still using" not in title
