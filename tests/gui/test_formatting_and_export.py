from __future__ import annotations

import csv
import json
from pathlib import Path

from vramdeck.gui.formatting import fmt_ago, fmt_bytes, fmt_duration, short_model_id
from vramdeck.gui.log_export import write_csv, write_jsonl, write_log
from vramdeck.gui.records import LogEntry


def test_formatting() -> None:
    assert fmt_bytes(None) == "—"
    assert fmt_bytes(5 * 1024**2) == "5.0 MiB"
    assert fmt_bytes(81 * 1024**2) == "81 MiB"
    assert fmt_bytes(3 * 1024**3) == "3.00 GiB"
    assert fmt_duration(0.085) == "85 ms"
    assert fmt_duration(2.44) == "2.4 s"
    assert fmt_duration(185) == "3 min 05 s"
    assert fmt_ago(100.0, now=101.0) == "just now"
    assert fmt_ago(100.0, now=130.0) == "30 s ago"
    assert fmt_ago(None) == "—"
    assert short_model_id("${VRAMDECK_DEMO_MODELS}/gpt2-small") == "gpt2-small"
    assert short_model_id("Qwen/Qwen2.5-14B-Instruct") == "Qwen/Qwen2.5-14B-Instruct"


ENTRIES = [
    LogEntry(at=1000.0, kind="ModelLoaded", task="alpha", model="small", model_id="/m/a",
             device="cpu", bytes=1024, duration_s=0.5, reason="option small"),
    LogEntry(at=1001.0, kind="ModelEvicted", task="alpha", model="small", bytes=1024,
             reason="room for beta, with a comma", severity="eviction"),
]  # fmt: skip


def test_csv_export_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    assert write_csv(ENTRIES, path) == 2
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [r["kind"] for r in rows] == ["ModelLoaded", "ModelEvicted"]
    assert rows[1]["reason"] == "room for beta, with a comma"
    assert rows[0]["bytes"] == "1024" and rows[0]["model_id"] == "/m/a"


def test_jsonl_export_is_one_object_a_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    assert write_jsonl(ENTRIES, path) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["severity"] for line in lines] == ["info", "eviction"]
    assert write_log(ENTRIES, tmp_path / "x.csv") == 2
    assert (tmp_path / "x.csv").read_text(encoding="utf-8").startswith("time,at,kind")
