"""What the `vramdeck` command opens in the window when the config it was given is broken: the
last good config, else the demo, and the error for the banner (there may be no terminal)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6", reason="the window's tests need the gui extra (PySide6)")

from PySide6.QtCore import QSettings

from vramdeck.gui import app
from vramdeck.gui import settings as saved

GOOD = "models:\n  chat:\n    options:\n      a: {model_id: org/a, vram_gb: 1}\n"
BROKEN = "models:\n  chat:\n    selected: x\n"


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_broken_config_opens_the_last_good_one_with_the_error(
    settings: QSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, broken = write(tmp_path, "good.yaml", GOOD), write(tmp_path, "broken.yaml", BROKEN)
    saved.remember_config(settings, good)
    opened = app._open_bridge(app.WindowOptions(config=str(broken)), settings)
    assert not isinstance(opened, int)
    bridge, problem = opened
    try:
        assert bridge.config_path.resolve() == good.resolve()
        assert problem is not None
        assert problem.title == "Could not open broken.yaml; opened good.yaml instead"
        assert "broken.yaml:2: models.chat.options" in problem.detail
        assert "broken.yaml:2: models.chat.options" in capsys.readouterr().err
    finally:
        bridge.deleteLater()


def test_with_no_good_config_remembered_the_demo_opens(settings: QSettings, tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", BROKEN)
    saved.remember_config(settings, broken)  # remembered, and broken since
    opened = app._open_bridge(app.WindowOptions(config=str(broken)), settings)
    assert not isinstance(opened, int)
    bridge, problem = opened
    try:
        assert bridge.config_path.name == "demo.yaml"
        assert problem is not None and problem.title.endswith("opened demo.yaml instead")
    finally:
        bridge.deleteLater()
