"""The task table's model and the event log, fed plain records (no manager)."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt

from vramdeck.gui.event_log import ALL_KINDS, EventLog
from vramdeck.gui.records import LogEntry, OptionInfo, TaskRow
from vramdeck.gui.task_table import ROW_ROLE, Column, TaskTableModel, state_text

OPTIONS = (
    OptionInfo("small", "/m/a", "transformers", 0.5, "fast", "auto"),
    OptionInfo("served", "org/x", "vllm", 18, "fast", "auto", unavailable_reason="no vllm"),
)


def row(**kw) -> TaskRow:
    base = {"task": "alpha", "description": "First", "options": OPTIONS, "selected": "small",
                "state": "unloaded", "estimated_bytes": 512 * 1024**2}  # fmt: skip
    return TaskRow(**{**base, **kw})


def test_rows_show_selection_memory_and_state(qtbot) -> None:
    model = TaskTableModel()
    model.set_rows([row(), row(task="beta", state="loading", progress=0.4, stage="reading")])
    assert model.rowCount() == 2
    text = model.index(0, Column.MODEL).data()
    assert text == "small · 512 MiB · fast"
    assert model.index(0, Column.MODEL).data(Qt.ItemDataRole.EditRole) == "small"
    assert model.index(0, Column.ESTIMATED).data() == "512 MiB"
    assert model.index(1, Column.STATE).data() == "loading 40% · reading"
    assert isinstance(model.index(1, 0).data(ROW_ROLE), TaskRow)


def test_choices_are_requests_not_changes(qtbot) -> None:
    model = TaskTableModel()
    model.set_rows([row()])
    with qtbot.waitSignal(model.optionChosen) as chosen:
        assert not model.setData(model.index(0, Column.MODEL), "served")
    assert chosen.args == ["alpha", "served"]
    assert model.rows()[0].selected == "small"  # until the manager says so
    with qtbot.waitSignal(model.pinToggled) as pinned:
        model.setData(model.index(0, Column.PINNED), Qt.CheckState.Checked.value,
                      Qt.ItemDataRole.CheckStateRole)  # fmt: skip
    assert pinned.args == ["alpha", True]


def test_update_row_signals_only_real_changes(qtbot) -> None:
    model = TaskTableModel()
    model.set_rows([row()])
    changes: list[int] = []
    model.dataChanged.connect(lambda a, b: changes.append(a.row()))
    model.update_row(row())
    model.update_row(row(state="loaded"))
    model.update_row(row(task="unknown"))
    assert changes == [0]
    assert state_text(row(state="failed")) == "failed"


def entries() -> list[LogEntry]:
    return [
        LogEntry(at=1.0, kind="ModelLoading", task="alpha", model="small"),
        LogEntry(at=1.1, kind="LoadProgress", task="alpha", reason="reading"),
        LogEntry(at=2.0, kind="ModelLoaded", task="alpha", model="small", bytes=1024),
        LogEntry(
            at=3.0,
            kind="ModelEvicted",
            task="alpha",
            model="small",
            bytes=1024,
            reason="room for beta",
            severity="eviction",
        ),
    ]


def test_log_filters_by_kind_and_text_and_exports_what_it_shows(qtbot, tmp_path: Path) -> None:
    log = EventLog()
    qtbot.addWidget(log)
    for entry in entries():
        log.add_entry(entry)
    assert log.model.rowCount() == 0  # queued: shown together, at most 10 times a second
    qtbot.waitUntil(lambda: log.model.rowCount() == 4, timeout=2000)
    assert [e.kind for e in log.visible_entries()] == ["ModelLoading", "ModelLoaded",
                                                       "ModelEvicted"]  # fmt: skip
    log.show_kind(None)
    assert log.kind_combo.currentText() == ALL_KINDS
    assert len(log.visible_entries()) == 4
    log.show_kind("ModelEvicted")
    assert [e.reason for e in log.visible_entries()] == ["room for beta"]
    assert log.count.text() == "1 of 4"
    # Evictions stand out.
    index = log.proxy.index(0, 1)
    assert index.data(Qt.ItemDataRole.BackgroundRole) is not None
    assert index.data(Qt.ItemDataRole.FontRole).bold()
    assert log.export(tmp_path / "evictions.jsonl") == 1
    line = json.loads((tmp_path / "evictions.jsonl").read_text(encoding="utf-8"))
    assert line["kind"] == "ModelEvicted" and line["reason"] == "room for beta"
    log.show_kind(None)
    log.search.setText("beta")
    assert len(log.visible_entries()) == 1


def test_log_keeps_at_most_max_rows(qtbot) -> None:
    log = EventLog(max_rows=100)
    qtbot.addWidget(log)
    for i in range(250):
        log.add_entry(LogEntry(at=float(i), kind="ModelLoaded", task=f"t{i}"))
        if i % 60 == 0:
            log.flush()
    log.flush()
    assert log.model.rowCount() <= 100
    assert log.model.entries()[-1].task == "t249"
