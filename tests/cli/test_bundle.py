"""Smoke test of the PyInstaller bundle that `make bundle` builds; skipped when there is none."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import FITS

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "vramdeck" / "vramdeck"

pytestmark = pytest.mark.skipif(
    not BUNDLE.is_file(), reason=f"no bundle at {BUNDLE.relative_to(ROOT)}: run `make bundle`"
)


def bundle_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "VRAMDECK_STATE_DIR": str(tmp_path / "state"),
        "VRAMDECK_CACHE_DIR": str(tmp_path / "cache"),
        **extra,
    }


def test_the_bundled_window_starts_and_quits_cleanly(tmp_path):
    result = subprocess.run(
        [str(BUNDLE)],
        env=bundle_env(tmp_path, VRAMDECK_QUIT_AFTER_S="2"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_the_bundle_runs_the_headless_commands(tmp_path, write_config):
    env = bundle_env(tmp_path)
    status = subprocess.run(
        [str(BUNDLE), "status", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stderr[-4000:]
    assert json.loads(status.stdout)["devices"]
    validate = subprocess.run(
        [str(BUNDLE), "validate", str(write_config(FITS))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validate.returncode == 0, validate.stderr[-4000:]
    version = subprocess.run([str(BUNDLE), "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.strip() not in ("", "unknown")
