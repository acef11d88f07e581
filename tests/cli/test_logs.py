"""The rotating log file in the state folder, secrets masked, and the event log's export."""

from __future__ import annotations

import json
import logging
import logging.handlers
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.events import LoadFailed, ModelLoaded, ServerOutput
from manager.logs import LOG_NAME, export_events, format_event, setup_file_logging, state_dir

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def root_handlers() -> Iterator[None]:
    """Remove the handlers a test adds to the root logger, and restore its level."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_the_log_file_goes_to_the_state_folder(root_handlers, tmp_path, monkeypatch):
    monkeypatch.setenv("VRAMDECK_STATE_DIR", str(tmp_path / "state"))
    path = setup_file_logging()
    assert path == tmp_path / "state" / LOG_NAME == state_dir() / LOG_NAME
    logging.getLogger("manager.test").info("loaded %s", "gpt2")
    assert "INFO    manager.test [MainThread] loaded gpt2" in path.read_text(encoding="utf-8")


def test_setting_up_twice_adds_one_handler(root_handlers, tmp_path):
    first = setup_file_logging(folder=tmp_path)
    second = setup_file_logging(folder=tmp_path)
    assert first == second
    mine = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.handlers.RotatingFileHandler)
        and Path(h.baseFilename) == tmp_path / LOG_NAME
    ]
    assert len(mine) == 1


def test_the_file_rotates_keeping_three(root_handlers, tmp_path):
    path = setup_file_logging(folder=tmp_path, max_bytes=2_000, backups=3)
    log = logging.getLogger("manager.rotation")
    for i in range(200):
        log.warning("line %03d %s", i, "x" * 60)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [LOG_NAME, f"{LOG_NAME}.1", f"{LOG_NAME}.2", f"{LOG_NAME}.3"]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    assert "line 199" in path.read_text(encoding="utf-8")


def test_api_keys_never_reach_the_log_file(root_handlers, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    path = setup_file_logging(folder=tmp_path)
    log = logging.getLogger("manager.secrets")
    log.warning("calling with key %s", KEY)
    try:
        raise ValueError(f"rejected key {KEY}")
    except ValueError:
        log.exception("request failed")
    text = path.read_text(encoding="utf-8")
    assert KEY not in text
    assert text.count("***") == 2
    assert "ValueError: rejected key ***" in text


def events():
    return [
        ModelLoaded(at=1_700_000_000.0, task="chat", option="small", model_id="gpt2",
                    device="cpu", measured_bytes=1024, estimated_bytes=2048, duration_s=0.5),
        LoadFailed(at=1_700_000_001.0, task="vision", option="a", model_id="x/a",
                   reason="out of memory", duration_s=0.1),
        ServerOutput(at=1_700_000_002.0, task="chat", line=f"using key {KEY}"),
    ]  # fmt: skip


def test_export_as_text_has_one_line_per_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    path = export_events([*events(), "a line the panel wrote"], tmp_path / "events.log")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    assert (
        "ModelLoaded" in lines[0] and "task=chat" in lines[0] and "measured_bytes=1024" in lines[0]
    )
    assert 'reason="out of memory"' in lines[1]
    assert KEY not in lines[2] and "***" in lines[2]
    assert lines[3] == "a line the panel wrote"
    assert lines[0] == format_event(events()[0])


def test_export_as_json_lines_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    path = export_events([*events(), "note"], tmp_path / "events.jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["kind"] for r in records] == ["ModelLoaded", "LoadFailed", "ServerOutput", "Text"]
    assert records[0]["measured_bytes"] == 1024 and records[0]["at"] == 1_700_000_000.0
    assert records[0]["time"].startswith("2023-11-")
    assert KEY not in path.read_text(encoding="utf-8")
    assert records[3]["text"] == "note"
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
