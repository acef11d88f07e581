"""Save from the panel: only `selected:` changes, a .bak is kept, a file changed on disk is
not overwritten unless the person says so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vramdeck.gui.bridge import CHANGED_ON_DISK, SAVED

CONFIG = """\
# my workstation
models:
  chat:            # the assistant
    selected: small
    options:
      small: {model_id: fake/small, vram_gb: 0.1}
      big: {model_id: fake/big, vram_gb: 0.2}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(CONFIG)
    return path


def test_save_writes_only_the_selection_and_keeps_a_backup(make_panel, config: Path):
    panel = make_panel(config)
    bridge = panel.bridge
    assert not bridge.config_dirty
    assert panel.run(bridge.select("chat", "big"))
    assert bridge.config_dirty
    assert panel.run(bridge.save_config()) == SAVED
    assert not bridge.config_dirty
    assert config.read_text() == CONFIG.replace("selected: small", "selected: big")
    assert Path(f"{config}.bak").read_text() == CONFIG


def test_a_file_changed_on_disk_is_not_overwritten_without_asking(make_panel, config: Path):
    panel = make_panel(config)
    bridge = panel.bridge
    assert panel.run(bridge.select("chat", "big"))
    edited = CONFIG.replace("# my workstation", "# edited elsewhere")
    config.write_text(edited)
    os.utime(config, (1, 1))  # a different mtime even on a coarse clock
    assert panel.run(bridge.save_config()) == CHANGED_ON_DISK
    assert config.read_text() == edited and bridge.config_dirty
    assert panel.run(bridge.save_config(overwrite=True)) == SAVED
    assert config.read_text() == edited.replace("selected: small", "selected: big")


def test_the_window_asks_before_overwriting(make_panel, config: Path, qtbot):
    panel = make_panel(config)
    window = panel.window
    save = window.actions_.save_config
    assert not save.isEnabled()
    assert panel.run(window.bridge.select("chat", "big"))
    assert save.isEnabled()
    config.write_text(CONFIG + "# edited elsewhere\n")
    os.utime(config, (1, 1))
    asked: list[Path] = []

    def refuse(path: Path) -> bool:
        asked.append(path)
        return False

    window.confirm_overwrite = refuse
    panel.run(window.save_config())
    qtbot.waitUntil(lambda: bool(asked), timeout=5000)
    assert asked == [config] and "selected: small" in config.read_text()
    window.confirm_overwrite = lambda path: True
    window._ask_overwrite()
    qtbot.waitUntil(lambda: "selected: big" in config.read_text(), timeout=5000)
    qtbot.waitUntil(lambda: not save.isEnabled(), timeout=5000)
