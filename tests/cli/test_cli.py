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
    assert [m for m in loaded.split(",") if m and m != "torch"] == []


def test_a_reader_that_goes_away_ends_the_command_quietly(write_config):
    # `vramdeck plan --json | head -1`: the pipe closes before the report is written.
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramdeck.cli", "plan", "--json", str(write_config(FITS))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141  # as for a process that SIGPIPE ended
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_status_with_a_config_shows_its_budget_per_device(write_config):
    result = vramdeck("status", str(write_config(FITS)))
    assert result.returncode == 0, result.stderr
    assert "budgets under" in result.stdout and "budget" in result.stdout.splitlines()[1]
    cpu = next(line for line in result.stdout.splitlines() if line.startswith("cpu "))
    assert cpu.rstrip().endswith("4.00 GiB")  # memory_budget_gb: 4
    result = vramdeck("status", "--json", str(write_config(FITS)))
    devices = json.loads(result.stdout)["devices"]
    assert next(d for d in devices if d["device"] == "cpu")["budget"] == 4 * 1024**3
    result = vramdeck("status", str(write_config("models: {}\n")))
    assert result.returncode == 2
    assert result.stderr.startswith("vramdeck status: error: ")


def test_version_from_the_metadata_or_the_package(monkeypatch):
    import tomllib

    import vramdeck as package
    from vramdeck import cli

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    expected = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    assert package.__version__ == expected  # the fallback keeps up with the distribution
    result = vramdeck("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vramdeck {expected}"

    def no_metadata(name: str) -> str:
        raise cli.PackageNotFoundError(name)

    monkeypatch.setattr(cli, "version", no_metadata)  # as in a PyInstaller bundle
    assert cli.package_version() == expected


def test_without_pyside6_the_window_says_how_to_install_it():
    code = (
        "import sys\n"
        "for name in ('PySide6', 'pyqtgraph', 'qasync'):\n"
        "    sys.modules[name] = None  # a headless install: importing them fails\n"
        "from vramdeck.cli import main\n"
        "sys.exit(main([]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "pip install 'vramdeck[gui]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_headless_install_needs_no_gui_package():
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    gui = ("pyside6", "pyqtgraph", "qasync")
    assert [d for d in project["dependencies"] if d.lower().startswith(gui)] == []
    extra = project["optional-dependencies"]["gui"]
    assert {d.split(">")[0].split(";")[0].lower() for d in extra} == {
        "pyside6-essentials",
        "pyqtgraph",
        "qasync",
    }


def test_the_headless_commands_run_where_the_gui_packages_are_missing(write_config):
    code = (
        "import sys\n"
        "for name in ('PySide6', 'pyqtgraph', 'qasync'):\n"
        "    sys.modules[name] = None\n"
        "from vramdeck.cli import main\n"
        f"codes = [main(['validate', {str(write_config(FITS))!r}]), main(['status'])]\n"
        "print('CODES', codes)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "CODES [0, 0]" in result.stdout
