"""The rotating log file in the state folder, with secrets masked."""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterator
from pathlib import Path

import pytest

from vramdeck.manager.logs import LOG_NAME, redact, setup_file_logging, state_dir

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


def test_redact_masks_every_secret_variable_and_nothing_else(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-abcdefgh")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SHORT_SECRET", "abc")  # too short to be a key, and would mask words
    text = f"{KEY} and tok-abcdefgh but abc stays"
    assert redact(text) == "*** and *** but abc stays"
