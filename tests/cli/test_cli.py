"""The ``vramdeck`` command as a real process: every command, every error exit, every --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import BAD_VALUE, DOES_NOT_FIT, FITS, NOTHING_FITS

QT_AND_TORCH = ("PySide6", "PyQt5", "PyQt6", "qasync", "pyqtgraph", "gui", "torch", "transformers")


def vramdeck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramdeck.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_exits_0_when_it_fits(write_config):
    result = vramdeck("validate", str(write_config(FITS)))
    assert result.returncode == 0, result.stderr
    assert "OK: the selected models fit" in result.stdout


def test_validate_exits_1_when_it_does_not_fit(write_config):
    result = vramdeck("validate", "--json", str(write_config(DOES_NOT_FIT)))
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["valid"] is False


def test_validate_exits_2_on_a_bad_config(write_config):
    result = vramdeck("validate", str(write_config(BAD_VALUE)))
    assert result.returncode == 2
    assert result.stdout == ""
    line = result.stderr.strip()
    assert line.startswith("vramdeck validate: error: ")
    assert "models.yaml:13: models.vision.options.b.vram_gb: expected a number ≥ 0" in line


def test_validate_exits_2_on_a_missing_file(tmp_path: Path):
    result = vramdeck("validate", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "missing.yaml: no such file" in result.stderr


def test_plan_exits_0_with_a_suggestion(write_config):
    result = vramdeck("plan", str(write_config(DOES_NOT_FIT)))
    assert result.returncode == 0, result.stderr
    assert "Suggested selection (exhaustive search over 6 combinations)" in result.stdout


def test_plan_exits_1_when_nothing_fits(write_config):
    result = vramdeck("plan", "--json", str(write_config(NOTHING_FITS)))
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["suggestion"]["found"] is False


def test_plan_exits_2_on_a_bad_config(write_config):
    result = vramdeck("plan", str(write_config("models: {}\n")))
    assert result.returncode == 2
    assert "models.yaml:1: models: expected at least one task" in result.stderr


def test_status_json_lists_devices_with_memory_in_bytes():
    result = vramdeck("status", "--json")
    assert result.returncode == 0, result.stderr
    devices = json.loads(result.stdout)["devices"]
    assert devices[-1]["device"] == "cpu"
    for d in devices:
        assert set(d) == {"device", "name", "probe", "total", "used", "free"}
        assert d["total"] > 0 and d["free"] == d["total"] - d["used"]


@pytest.mark.parametrize("command", ["validate", "plan", "status"])
def test_each_command_has_help(command: str):
    result = vramdeck(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: vramdeck {command} [-h] [--json]")


def test_the_top_level_help_shows_the_commands_and_the_window_options():
    result = vramdeck("--help")
    assert result.returncode == 0
    for word in ("validate", "plan", "status", "--config PATH", "--screenshot PATH", "exit codes"):
        assert word in result.stdout


def test_a_usage_error_exits_2():
    result = vramdeck("plan")
    assert result.returncode == 2
    assert "usage: vramdeck plan" in result.stderr


def test_python_dash_m_vramdeck_runs_the_same_command():
    result = subprocess.run(
        [sys.executable, "-m", "vramdeck", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "devices" in json.loads(result.stdout)


@pytest.mark.parametrize("command", ["validate", "plan", "status"])
def test_headless_commands_import_no_qt_and_no_torch(write_config, command: str):
    args = [command] if command == "status" else [command, str(write_config(FITS))]
    code = (
        "import sys\n"
        "from vramdeck.cli import main\n"
        f"main({args!r})\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        "top |= {'gui' for m in sys.modules if m.startswith('vramdeck.gui')}\n"
        f"print('LOADED', ','.join(sorted(top & set({QT_AND_TORCH!r}))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.rsplit("LOADED", 1)[1].strip()
    # torch only where NVML's library exists but cannot read a device (the probe's fallback).
    assert [m for m in loaded.split(",") if m and m not in ("torch",)] == []
