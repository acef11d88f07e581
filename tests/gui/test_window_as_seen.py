"""The panel as a person at a workstation sees it: each test checks one thing that looked wrong
in the offscreen screenshots at 1366x768 and 1920x1080 (geometry, visibility and text, never
pixels)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionComboBox

from tests.fakes import FakeProbe
from tests.gui.helpers import Panel, write_config
from vramdeck.gui import paths
from vramdeck.gui.chart_legend import NO_NVML
from vramdeck.gui.event_log import REASON_LEAST
from vramdeck.gui.event_log_model import LogColumn
from vramdeck.gui.formatting import MIB, plain_reason
from vramdeck.gui.option_delegate import OptionCombo
from vramdeck.gui.records import DeviceInfo, LogEntry, OptionInfo, TaskRow
from vramdeck.gui.status_bar import StatusBar
from vramdeck.gui.task_table import Column, TaskTableModel
from vramdeck.gui.window_layout import first_size
from vramdeck.manager import Ledger, ModelManager

ONE_TASK = """\
models:
  chat:
    selected: a
    options:
      a: {model_id: fake/a, vram_gb: 0.1, device: %s}
"""


@pytest.mark.parametrize(
    ("devices", "device", "line"),
    [
        ({"cpu": 16.0}, "cpu", ""),  # host RAM: no GPU to say anything about
        ({"cuda:0": 8.0, "cpu": 16.0}, "cuda:0", NO_NVML),  # a GPU that NVML does not read
    ],
)
def test_the_chart_speaks_of_nvml_only_for_a_gpu_it_cannot_read(
    make_panel: Callable[..., Panel], tmp_path: Path, devices: dict[str, float], device: str,
    line: str,
) -> None:  # fmt: skip
    config = write_config(tmp_path, ONE_TASK % device)
    manager = ModelManager(config, probe=FakeProbe(devices), ledger=Ledger(None))
    panel = make_panel(manager=manager)
    chart = panel.window.chart  # built now, with what the window said before
    assert chart.device == device
    assert chart.activity.text() == line and chart.activity.isVisible() == bool(line)


def row(**changes: object) -> TaskRow:
    option = OptionInfo(name="gpt2-medium", model_id="org/gpt2-medium", framework="transformers",
                        vram_gb=0.08, speed="medium", device="auto")  # fmt: skip
    fields: dict[str, object] = {"task": "text_generation", "description": "",
                                 "options": (option,), "selected": "gpt2-medium",
                                 "state": "unloaded"}  # fmt: skip
    fields.update(changes)
    return TaskRow(**fields)  # type: ignore[arg-type]


def test_load_time_shows_a_dash_not_a_sum_when_the_model_was_not_loaded_in_this_run(
    qapp: object,
) -> None:
    model = TaskTableModel()
    model.set_rows([row(first_inference_s=0.109)])  # remembered from an earlier warm-up
    cell = model.index(0, Column.LOAD_TIME)
    assert cell.data() == "—"
    assert cell.data(Qt.ItemDataRole.ToolTipRole) == "The first inference took 109 ms last time"
    model.set_rows([row(state="loaded", load_duration_s=0.042, first_inference_s=0.109)])
    assert model.index(0, Column.LOAD_TIME).data() == "42 ms + 109 ms"


#: The demo's tasks and option names (configs/demo.yaml), on models that are never loaded.
DEMO_LIKE = """\
models:
  text_generation:
    selected: gpt2-medium
    options:
      gpt2-medium: {model_id: fake/m, vram_gb: 0.08, speed: medium}
      gpt2-small: {model_id: fake/s, vram_gb: 0.02, speed: fast}
      llama-8b-vllm: {model_id: org/llama, framework: vllm, vram_gb: 18, speed: fast}
  code_completion:
    options:
      gpt2-small: {model_id: fake/s, vram_gb: 0.02, speed: fast}
  embeddings:
    options:
      minilm: {model_id: fake/minilm, vram_gb: 0.085, speed: fast}
  classification:
    options:
      bert-mini: {model_id: fake/bert, vram_gb: 0.064, speed: fast}
  assistant:
    options:
      local-endpoint: {model_id: chat, framework: external_api, provider: openai,
                       requires_api_key: false, speed: medium}
"""


@pytest.fixture
def app_look(qapp: QApplication) -> Iterator[None]:
    """The app's font and style sheet, as gui/app.py sets them, for the windows made in a test
    (the default ones are smaller: a test in them passed where the app's cut text)."""
    font, sheet = qapp.font(), qapp.styleSheet()
    bigger = QFont(font)
    bigger.setPointSizeF(max(font.pointSizeF(), 9.5))
    style = paths.resource("vramdeck.qss")
    assert style is not None, "resources/vramdeck.qss is missing"
    qapp.setFont(bigger)
    qapp.setStyleSheet(style.read_text(encoding="utf-8"))
    yield
    qapp.setStyleSheet(sheet)
    qapp.setFont(font)


@pytest.fixture
def laptop_panel(make_panel: Callable[..., Panel], tmp_path: Path, qtbot: Any) -> Panel:
    """A panel on a demo-like config, its window as it first opens on a 1366x768 screen."""
    panel = make_panel(write_config(tmp_path, DEMO_LIKE))
    laptop_window(panel, qtbot)
    return panel


def laptop_window(panel: Panel, qtbot: Any) -> None:
    """The panel's window as it first opens on a 1366x768 screen."""
    window = panel.window
    size = first_size(QRect(0, 0, 1366, 768))
    window.resize(size)
    qtbot.waitUntil(lambda: window.size() == size and window.table.width() > size.width() - 40)
    window.layout_.share(len(panel.bridge.task_rows()))  # the splitters as a first start shares


@pytest.mark.usefixtures("app_look")
def test_at_1366_the_model_boxes_show_whole_names_and_the_lists_whole_labels(
    laptop_panel: Panel,
) -> None:
    panel = laptop_panel
    table = panel.window.table
    for task_row in panel.bridge.task_rows():
        combo = table.option_combo(task_row.task)
        assert isinstance(combo, OptionCombo)
        assert combo.shown_text() == task_row.selected  # its size is the Estimated column's
        style = QStyleOptionComboBox()
        combo.initStyleOption(style)
        field = combo.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, style, QStyle.SubControl.SC_ComboBoxEditField, combo
        )
        assert field.width() >= combo.fontMetrics().horizontalAdvance(combo.shown_text())
        labels = [combo.itemText(i) for i in range(combo.count())]
        assert labels == [o.label for o in task_row.options]  # the list compares the options
    # What State must show whole, after the names: a load's share (its stage may elide).
    loading = table.fontMetrics().horizontalAdvance("loading 100%")
    assert table.columnWidth(Column.STATE) >= loading + 8
    # A load and its warm-up's first inference: "126 ms + …" was cut.
    loaded = table.fontMetrics().horizontalAdvance("126 ms + 90 ms")
    assert table.columnWidth(Column.LOAD_TIME) >= loaded + 8


def test_the_status_bar_names_the_probe_only_where_the_device_does_not_say_it(qtbot: Any) -> None:
    status = StatusBar()
    qtbot.addWidget(status)
    host, gpu = DeviceInfo("cpu", "System RAM", "host"), DeviceInfo("cuda:0", "H200", "nvml")
    status.show_devices([host, gpu], "cpu")
    assert status.device_label.text() == "System RAM (cpu)" and status.probe_label.isHidden()
    status.show_devices([host, gpu], "cuda:0")
    assert not status.probe_label.isHidden() and status.probe_label.text() == "probe: NVML"


@pytest.mark.allow_log(r"loading alpha \(.*missing\) failed")
def test_a_failed_load_is_said_once_in_plain_words_and_in_full_on_hover(panel: Panel) -> None:
    assert panel.run(panel.bridge.select("alpha", "broken"))
    assert not panel.run(panel.bridge.load("alpha"))
    window = panel.window
    window.flush()
    title, message = window.banner.title.text(), window.banner.message.text()
    assert "Could not load alpha" in title and message.startswith("model folder ")
    assert "alpha" not in message and "Error" not in message  # said in the title; no jargon
    cell = window.table_model.index(window.table_model.row_of("alpha"), Column.STATE)
    assert cell.data() == f"failed: {message}"
    full = cell.data(Qt.ItemDataRole.ToolTipRole)  # the manager's reason, whole
    assert full.startswith("failed: model folder ") and full.endswith("missing does not exist")
    entries = window.log.model.entries()
    assert [e.reason for e in entries if e.kind == "LoadFailed"] == [message]  # plain words
    assert [e for e in entries if e.kind == "Error"] == []  # said once: no "Error" line besides


def test_plain_reason_keeps_a_message_that_is_only_a_class_name() -> None:
    assert plain_reason("alpha: OSError: disk full", "alpha") == "disk full"
    assert plain_reason("torch.cuda.OutOfMemoryError: CUDA out of memory") == "CUDA out of memory"
    assert plain_reason("alphabet: no such file", "alpha") == "alphabet: no such file"
    assert plain_reason("RuntimeError: ") == "RuntimeError: "


@pytest.mark.usefixtures("app_look")
def test_at_1366_the_log_shows_whole_task_and_model_names(laptop_panel: Panel, qtbot: Any) -> None:
    panel = laptop_panel
    log = panel.window.log
    for i in range(60):  # more than a screenful: the scroll bar shows
        log.add_entry(
            LogEntry(
                at=1000.0 + i,
                kind="ModelEvicted",
                task="code_completion",
                model="gpt2-medium",
                bytes=MIB,
                reason="room for embeddings",
            )
        )
    log.flush()
    table = log.table
    qtbot.waitUntil(table.verticalScrollBar().isVisible)
    bold = QFont(table.font())
    bold.setBold(True)  # an eviction's row
    metrics = QFontMetrics(bold)
    padding = 2 * table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 2
    for column, text in ((LogColumn.TASK, "code_completion"), (LogColumn.MODEL, "gpt2-medium")):
        assert table.columnWidth(column) >= metrics.horizontalAdvance(text) + padding, text
    assert table.columnWidth(LogColumn.REASON) >= REASON_LEAST


def test_a_warm_up_that_evicted_says_so_beside_how_many_it_loaded(panel: Panel) -> None:
    said: list[str] = []
    panel.window.status.messageChanged.connect(said.append)
    panel.run(panel.bridge.warm_up(), timeout=60)
    # alpha, beta, gamma and the API load; gamma needs room, so alpha goes (test_flows).
    assert said[-1] == "Warm-up done: 4 models loaded, 1 evicted again"
    loaded = [r.task for r in panel.bridge.task_rows() if r.loaded]
    assert loaded == ["beta", "gamma", "remote"]  # 4 - 1, as the table shows
