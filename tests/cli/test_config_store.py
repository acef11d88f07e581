"""Saving selections: only `selected` changes, the write is atomic, one .bak, no silent overwrite."""

from __future__ import annotations

import difflib
import json
import os
import stat
from pathlib import Path

import pytest

from vramdeck.manager.config import ConfigError, load_config, parse_config
from vramdeck.manager.config_store import (
    ConfigChangedOnDisk,
    apply_selections,
    backup_path,
    file_mtime,
    save_selections,
)

# Features a YAML round trip tends to lose: a comment above "---", blank lines, flow maps with
# trailing comments, quoted scalars, 4-space indentation in one block, anchors and merge keys,
# an explicit null, "no" as a boolean, and non-ASCII text.
ORIGINAL = """\
# vramdeck models — the workstation's config
# (a second header line)
---
models:
  # Chat first
  chat:   # the chat task
    selected: small  # pick one

    pinned: false
    options:
      small: {model_id: gpt2, vram_gb: 1.0}   # tiny
      big:
        model_id: "meta/Llama-3.1-8B"
        vram_gb: 16
        description: 'A long description that goes on and on and on and on and on and on and on'
  vision:
    selected: "a"
    options:
      a: &base
        model_id: x/y
        vram_gb: 2
      b:
        <<: *base
        vram_gb: 3
      "c d": {model_id: x/z, vram_gb: 1}

inference:
    offload_threshold: 0.9   # keep 10% free
    memory_budget_gb: null
    warmup_on_startup: no
"""


def changed_lines(old: str, new: str) -> list[str]:
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    return path


def test_round_trip_changes_only_the_selected_lines(config: Path):
    save_selections(config, {"chat": "big", "vision": "b"})
    new = config.read_text(encoding="utf-8")
    assert changed_lines(ORIGINAL, new) == [
        "-    selected: small  # pick one",
        "+    selected: big  # pick one",
        '-    selected: "a"',
        '+    selected: "b"',
    ]
    loaded = load_config(config)
    assert (loaded.tasks["chat"].selected, loaded.tasks["vision"].selected) == ("big", "b")


def test_comments_and_key_order_are_preserved(config: Path):
    save_selections(config, {"chat": "big"})
    new = config.read_text(encoding="utf-8")
    old_comments = [line for line in ORIGINAL.splitlines() if "#" in line]
    new_comments = [line for line in new.splitlines() if "#" in line]
    assert [c.split("#", 1)[1] for c in new_comments] == [c.split("#", 1)[1] for c in old_comments]
    assert list(load_config(config).raw["models"]) == ["chat", "vision"]
    assert list(load_config(config).raw["models"]["chat"]) == ["selected", "pinned", "options"]


def test_the_backup_holds_the_previous_content_and_there_is_one(config: Path):
    save_selections(config, {"chat": "big"})
    assert backup_path(config).read_text(encoding="utf-8") == ORIGINAL
    after_first = config.read_text(encoding="utf-8")
    save_selections(config, {"chat": "small"})
    assert backup_path(config).read_text(encoding="utf-8") == after_first
    assert sorted(p.name for p in config.parent.iterdir()) == ["models.yaml", "models.yaml.bak"]


@pytest.mark.parametrize("fail_at", ["fsync", "replace", "write"])
def test_an_interrupted_save_leaves_the_old_file_intact(
    config: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
):
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        raise OSError(28, "No space left on device (simulated)")

    if fail_at == "write":
        real_fdopen = os.fdopen

        def fdopen_failing_midway(fd, *args, **kwargs):
            f = real_fdopen(fd, *args, **kwargs)
            real_write = f.write

            def write(text):
                calls["n"] += 1
                real_write(text[: len(text) // 2])  # half the new content reached the disk
                f.flush()
                raise OSError(28, "No space left on device (simulated)")

            f.write = write
            return f

        monkeypatch.setattr(os, "fdopen", fdopen_failing_midway)
    else:
        monkeypatch.setattr(os, fail_at, interrupted)
    with pytest.raises(OSError, match="simulated"):
        save_selections(config, {"chat": "big"})
    assert calls["n"] == (1 if fail_at == "write" else 0)
    assert config.read_text(encoding="utf-8") == ORIGINAL
    leftovers = [p.name for p in config.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_file_changed_on_disk_is_not_overwritten(config: Path):
    opened_at = file_mtime(config)
    edited = ORIGINAL.replace("vram_gb: 16", "vram_gb: 15")
    config.write_text(edited, encoding="utf-8")
    os.utime(config, (opened_at + 5, opened_at + 5))
    with pytest.raises(ConfigChangedOnDisk, match=r"modified .* since it was opened") as info:
        save_selections(config, {"chat": "big"}, expected_mtime=opened_at)
    assert info.value.expected_mtime == opened_at
    assert config.read_text(encoding="utf-8") == edited
    assert not backup_path(config).exists()


def test_saving_again_without_expected_mtime_keeps_the_other_edit(config: Path):
    # The person chose "overwrite": the selection is applied to what is on disk now.
    config.write_text(ORIGINAL.replace("vram_gb: 16", "vram_gb: 15"), encoding="utf-8")
    save_selections(config, {"chat": "big"}, expected_mtime=None)
    text = config.read_text(encoding="utf-8")
    assert "vram_gb: 15" in text
    assert "selected: big  # pick one" in text


def test_an_unchanged_mtime_saves_and_the_new_mtime_is_readable(config: Path):
    save_selections(config, {"chat": "big"}, expected_mtime=file_mtime(config))
    save_selections(config, {"chat": "small"}, expected_mtime=file_mtime(config))
    assert load_config(config).tasks["chat"].selected == "small"


def test_a_deleted_file_counts_as_changed_on_disk(config: Path):
    opened_at = file_mtime(config)
    config.unlink()
    with pytest.raises(ConfigChangedOnDisk, match="deleted"):
        save_selections(config, {"chat": "big"}, expected_mtime=opened_at)
    assert not config.exists()


def test_nothing_is_written_when_nothing_changes(config: Path):
    before = config.stat().st_mtime_ns
    save_selections(config, {"chat": "small"})
    assert config.stat().st_mtime_ns == before
    assert not backup_path(config).exists()


def test_permissions_are_kept(config: Path):
    config.chmod(0o640)
    save_selections(config, {"chat": "big"})
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(backup_path(config).stat().st_mode) == 0o640


def test_a_link_is_followed_and_stays_a_link(config: Path, tmp_path: Path):
    link = tmp_path / "link.yaml"
    link.symlink_to(config)
    save_selections(link, {"chat": "big"})
    assert link.is_symlink()
    assert "selected: big" in config.read_text(encoding="utf-8")


def test_windows_line_endings_are_kept(tmp_path: Path):
    path = tmp_path / "crlf.yaml"
    path.write_bytes(ORIGINAL.replace("\n", "\r\n").encode())
    save_selections(path, {"chat": "big"})
    data = path.read_bytes()
    assert data.count(b"\r\n") == ORIGINAL.count("\n")
    assert b"selected: big  # pick one\r\n" in data


def test_a_missing_selected_key_is_inserted_in_block_and_flow_maps(tmp_path: Path):
    text = (
        "models:\n"
        "  chat:\n"
        "    # options of chat\n"
        "    options:\n"
        "      a: {model_id: x}\n"
        "      b: {model_id: y}\n"
        "  tts: {options: {p: {model_id: p}, q: {model_id: q}}}\n"
    )
    new = apply_selections(text, {"chat": "b", "tts": "q"})
    assert new == (
        "models:\n"
        "  chat:\n"
        "    # options of chat\n"
        "    selected: b\n"
        "    options:\n"
        "      a: {model_id: x}\n"
        "      b: {model_id: y}\n"
        "  tts: {selected: q, options: {p: {model_id: p}, q: {model_id: q}}}\n"
    )


@pytest.mark.parametrize(
    ("before", "option", "after"),
    [
        ("selected: a", "c: d", 'selected: "c: d"'),  # needs quotes
        ("selected: 'a'", "it's", "selected: 'it''s'"),  # keeps single quotes
        ('selected: "a"', "b", 'selected: "b"'),  # keeps double quotes
        ("selected: a", "yes", 'selected: "yes"'),  # would read as a boolean
        ("selected: a", "1", 'selected: "1"'),  # would read as a number
    ],
)
def test_option_names_are_quoted_when_they_must_be(before: str, option: str, after: str):
    options = {"a": "m1", "b": "m2", "c: d": "m3", "it's": "m4", "yes": "m5", "1": "m6"}
    body = "".join(f"      {json.dumps(k)}: {{model_id: {v}}}\n" for k, v in options.items())
    text = f"models:\n  t:\n    {before}\n    options:\n{body}"
    new = apply_selections(text, {"t": option})
    assert f"    {after}\n" in new
    _, tasks, _ = parse_config(new)
    assert tasks["t"].selected == option


def test_unknown_task_or_option_is_a_config_error_and_nothing_is_written(config: Path):
    with pytest.raises(ConfigError, match=r"models\.chat\.selected: names no option: 'huge'"):
        save_selections(config, {"chat": "huge"})
    with pytest.raises(ConfigError, match="names no task: 'audio'"):
        save_selections(config, {"audio": "x"})
    assert config.read_text(encoding="utf-8") == ORIGINAL
    assert not backup_path(config).exists()


def test_an_invalid_file_is_a_config_error_with_its_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  chat:\n    options:\n      a: {model_id: x, vram_gb: lots}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:4: models\.chat\.options\.a\.vram_gb"):
        save_selections(path, {"chat": "a"})


def test_a_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such file"):
        save_selections(tmp_path / "nope.yaml", {"chat": "a"})


def test_an_alias_on_selected_is_refused_rather_than_changing_the_anchor():
    text = (
        "defaults: {pick: &pick a}\n"
        "models:\n"
        "  t:\n"
        "    selected: *pick\n"
        "    options: {a: {model_id: x}, b: {model_id: y}}\n"
    )
    with pytest.raises(ConfigError, match="edit the file by hand"):
        apply_selections(text, {"t": "b"})
