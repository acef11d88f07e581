"""The app as a person starts it: the `vramdeck` command in a subprocess, and its options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from tests.gui.helpers import write_config
from vramdeck.gui import app, paths
from vramdeck.gui import settings as saved
from vramdeck.gui.bridge import ManagerBridge

VRAMDECK = Path(sys.executable).with_name("vramdeck")


def vramdeck(*args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    command = [str(VRAMDECK)] if VRAMDECK.exists() else [sys.executable, "-m", "vramdeck"]
    return subprocess.run(
        [*command, *args],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_vramdeck_quits_by_itself_through_the_close_path() -> None:
    # The demo, on a fresh cache: it quits while the demo models are still being made.
    done = vramdeck(VRAMDECK_QUIT_AFTER_S="1.5", VRAMDECK_TRACE_STARTUP="1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "window shown at" in done.stderr
    assert "torch=False" in done.stderr  # the window did not wait for torch


def test_screenshot_after_warm_up_then_exit_0(tmp_path: Path, gui_config: Path) -> None:
    text = gui_config.read_text(encoding="utf-8").replace(
        "inference:\n", "inference:\n  warmup_on_startup: true\n"
    )
    config = write_config(tmp_path, text, "warm.yaml")
    shot = tmp_path / "shots" / "window.png"
    done = vramdeck("--config", str(config), "--screenshot", str(shot),
                    VRAMDECK_SCREENSHOT_SETTLE_S="0.3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"saved a screenshot to {shot}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_config_on_the_command_line_still_opens_the_window(tmp_path: Path) -> None:
    # Started from the desktop entry there is no terminal: the window shows the error instead.
    bad = write_config(tmp_path, "models:\n  chat:\n    selected: x\n", "bad.yaml")
    done = vramdeck("--config", str(bad), VRAMDECK_QUIT_AFTER_S="1.5",
                    VRAMDECK_TRACE_STARTUP="1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{bad}:2: models.chat.options" in done.stderr  # and a terminal reads it too
    assert "window shown at" in done.stderr


def options(config: str | None = None) -> app.WindowOptions:
    return app.WindowOptions(config=config)


def opened(settings: QSettings) -> tuple[ManagerBridge, app.StartupProblem | None]:
    """The bridge `_open_bridge` opens, and what went wrong; it must not give up (an int)."""
    found = app._open_bridge(options(), settings)
    assert not isinstance(found, int), f"nothing opened: exit status {found}"
    return found


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def test_the_last_config_is_opened_again(settings: QSettings, gui_config: Path) -> None:
    demo = paths.shipped_config("demo.yaml")
    assert demo is not None and demo.name == "demo.yaml"
    bridge, error = opened(settings)
    assert bridge.config_path.resolve() == demo.resolve() and error is None
    saved.remember_config(settings, gui_config)
    bridge, error = opened(settings)
    assert bridge.config_path.resolve() == gui_config.resolve() and error is None


def test_a_broken_remembered_config_falls_back_to_the_demo(
    settings: QSettings, tmp_path: Path
) -> None:
    broken = write_config(tmp_path, "models: 3\n", "broken.yaml")
    saved.remember_config(settings, broken)
    bridge, error = opened(settings)
    assert bridge.config_path.name == "demo.yaml"
    assert error is not None and "broken.yaml" in str(error)


def test_window_layout_is_remembered(qtbot, qloop, settings: QSettings, gui_config: Path) -> None:
    from vramdeck.gui.main_window import MainWindow
    from vramdeck.manager import Ledger, ModelManager

    bridge = ManagerBridge(ModelManager(gui_config, ledger=Ledger(None)))
    first = MainWindow(bridge, settings)
    qtbot.addWidget(first)
    first.show()
    first.splitters["bottom"].setSizes([500, 900])
    first.set_chart_window(600)
    first.save_layout()
    sizes = first.splitters["bottom"].sizes()
    first.close_now()
    assert saved.layout_value(settings, "geometry") is not None
    # The offscreen screen is 800 × 800 and Qt clamps a restored geometry to it, which would
    # squeeze the splitters: compare them at the same window size.
    settings.remove("layout/geometry")
    second = MainWindow(bridge, settings)
    qtbot.addWidget(second)
    second.show()
    assert second.splitters["bottom"].sizes() == sizes
    assert second.chart.window_s == 600
    assert second.actions_.windows[600].isChecked()
    second.close_now()
    bridge.deleteLater()


def test_opentelemetry_is_set_up_only_when_the_environment_asks() -> None:
    code = (
        "from vramdeck.telemetry_setup import configure_from_env; stop = configure_from_env();"
        "from opentelemetry import trace; print(type(trace.get_tracer_provider()).__name__);"
        "stop()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}

    def provider(**extra: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], env={**env, **extra},
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert provider() == "ProxyTracerProvider"  # the API's no-op until an SDK is installed
    assert provider(OTEL_TRACES_EXPORTER="console") == "TracerProvider"
    assert provider(OTEL_TRACES_EXPORTER="none") == "ProxyTracerProvider"


@pytest.mark.parametrize("name", ["demo.yaml", "models.yaml"])
def test_the_shipped_configs_load_and_plan(qloop, name: str, monkeypatch, tmp_path) -> None:
    from tests.gui.helpers import run
    from vramdeck.gui.bridge import open_bridge

    # As the `vramdeck` command does before it opens the panel: the demo models' folder is known
    # (the planner skips options whose ${VARS} are unset, as it skips what cannot load here).
    monkeypatch.setenv("VRAMDECK_DEMO_MODELS", str(tmp_path / "demo-models"))
    config = paths.shipped_config(name)
    assert config is not None
    bridge = open_bridge(config)
    report = run(qloop, bridge.plan_budget())
    assert report is not None and report.plans
    rows = bridge.task_rows()
    assert all(r.options for r in rows)
    if name == "demo.yaml":
        # Together the selected models need more than the demo's budget: warm-up must evict.
        assert not report.valid
        assert {r.option.framework for r in rows} >= {"transformers", "external_api"}
        assert any(not o.available for r in rows for o in r.options)  # the vLLM option
    run(qloop, bridge.shutdown())
    bridge.deleteLater()
