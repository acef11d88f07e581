"""The panel as a new user found it (issue 10): unsaved selections on quit, a window that fits
the screen, start-up that says what it does, and reasons shown where a person reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QRect, QSize
from PySide6.QtWidgets import QWidget

from tests.gui.helpers import until, write_config
from vramdeck.gui.unsaved import UnsavedChoice
from vramdeck.gui.window_layout import (
    BOTTOM_LEAST,
    TABLE_ROWS,
    available_area,
    clamp_to,
    first_size,
    table_height,
)

CONFIG = """\
models:
  chat:
    selected: a
    options:
      a: {model_id: fake/a, vram_gb: 0.1}
      b: {model_id: fake/b, vram_gb: 0.2}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, CONFIG)


def test_b_then_a_again_leaves_nothing_to_save(make_panel, config: Path) -> None:
    panel = make_panel(config)
    window = panel.window
    assert panel.run(panel.bridge.select("chat", "b"))
    assert window.isWindowModified() and window.actions_.save_config.isEnabled()
    assert panel.run(panel.bridge.select("chat", "a"))
    assert not window.isWindowModified()  # the same as the file again: clean
    assert not window.actions_.save_config.isEnabled()
    asked: list[bool] = []

    def ask() -> UnsavedChoice:
        asked.append(True)
        return UnsavedChoice.CANCEL

    window.ask_unsaved = ask
    closing: list[bool] = []
    window.closeRequested.connect(lambda: closing.append(True))
    window.close()
    assert not asked and closing == [True]  # nothing to ask about: on to the shutdown


def test_quitting_with_changed_selections_asks_and_cancel_stays(make_panel, config) -> None:
    panel = make_panel(config)
    window = panel.window
    assert panel.run(panel.bridge.select("chat", "b"))
    asked: list[list[str]] = []

    def ask() -> UnsavedChoice:
        asked.append(window.on_file.changes(panel.bridge.selections()))
        return UnsavedChoice.CANCEL

    window.ask_unsaved = ask
    window.actions_.quit.trigger()  # Ctrl+Q
    assert asked == [["chat: a → b"]]
    assert window.isVisible() and not window._close_requested  # nothing shut down
    assert window.actions_.warm_up.isEnabled()
    window.ask_unsaved = lambda: UnsavedChoice.DISCARD  # the fixture's close at the end


def test_save_on_quit_writes_the_file_then_closes(make_panel, config: Path) -> None:
    panel = make_panel(config)
    window = panel.window
    assert panel.run(panel.bridge.select("chat", "b"))
    window.ask_unsaved = lambda: UnsavedChoice.SAVE
    closing: list[bool] = []
    window.closeRequested.connect(lambda: closing.append(True))
    window.actions_.quit.trigger()

    async def saved_and_closing() -> None:
        await until(lambda: bool(closing), "the close went on after the save")

    panel.run(saved_and_closing())
    assert "selected: b" in config.read_text()
    assert not window.selections_differ


def test_discard_on_quit_closes_and_leaves_the_file(make_panel, config: Path) -> None:
    panel = make_panel(config)
    window = panel.window
    assert panel.run(panel.bridge.select("chat", "b"))
    window.ask_unsaved = lambda: UnsavedChoice.DISCARD
    closing: list[bool] = []
    window.closeRequested.connect(lambda: closing.append(True))
    window.close()
    assert closing == [True]
    assert "selected: a" in config.read_text()


def test_the_first_window_fits_a_laptop_screen_and_a_remembered_one_is_clamped(qtbot) -> None:
    laptop = QRect(0, 0, 1366, 768)
    size = first_size(laptop)
    assert size.width() <= 1366 and size.height() <= 768 - 30  # room for the title bar
    assert first_size(QRect(0, 0, 3840, 2160)) == QSize(1600, 1000)
    widget = QWidget()
    qtbot.addWidget(widget)
    widget.setGeometry(900, 500, 1400, 900)  # remembered on a bigger screen
    clamp_to(widget, laptop)
    inside = widget.frameGeometry().adjusted(0, 0, 0, 30)
    assert laptop.contains(QRect(widget.pos(), widget.size())), (widget.geometry(), inside)


def test_the_window_opens_inside_the_screen_with_the_table_showing_its_rows(
    make_panel, tmp_path: Path
) -> None:
    tasks = "".join(f"  t{i}: {{options: {{o: {{model_id: fake/{i}, vram_gb: 0.1}}}}}}\n"
                    for i in range(12))  # fmt: skip
    panel = make_panel(write_config(tmp_path, "models:\n" + tasks))
    window = panel.window
    area = available_area(window)
    assert window.width() <= area.width() and window.height() <= area.height()
    table = window.table
    main = window.splitters["main"].height()
    expected = max(table_height(table, 3), min(table_height(table, 12), main - BOTTOM_LEAST))
    assert abs(table.height() - expected) <= 2  # its rows (up to 10), else what the chart leaves
    assert table_height(table, 12) == table_height(table, TABLE_ROWS)
    rows_shown = table.viewport().height() // table.verticalHeader().defaultSectionSize()
    assert rows_shown >= 3


@pytest.mark.allow_log("bad.*failed")
def test_startup_warm_up_says_what_it_does_and_a_failure_reaches_the_banner(
    make_panel, tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    config = write_config(tmp_path, f"""\
        inference: {{warmup_on_startup: true}}
        models:
          good: {{options: {{o: {{model_id: "{tiny_models['tiny-a']}", vram_gb: 0.001}}}}}}
          bad: {{options: {{o: {{model_id: "{tmp_path / 'missing'}", vram_gb: 0.001}}}}}}
        """)  # fmt: skip
    panel = make_panel(config, start=False)
    window = panel.window
    texts: list[str] = []
    window.status.messageChanged.connect(texts.append)
    panel.run(panel.session.start(sample_interval_s=0.05, preload=False))

    async def warmed() -> None:
        await until(lambda: panel.session.warmup.done(), "the warm-up ended", timeout=60)

    panel.run(warmed(), timeout=70)
    assert texts[0] == "Warming up 2 models…"
    assert "Warm-up: 1 of 2 models could not load" in texts
    assert window.banner.isVisible()
    assert "Warm-up could not load 1 model" in window.banner.title.text()
    assert window.banner.message.text().startswith("bad: ")
