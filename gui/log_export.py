"""Writing the event log to CSV or JSON Lines."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from .formatting import expand_vars, fmt_clock
from .records import LogEntry

FIELDS = ("time", "at", "kind", "task", "model", "model_id", "device", "bytes", "duration_s",
          "reason", "severity")  # fmt: skip


def _record(entry: LogEntry) -> dict[str, object]:
    record = {"time": fmt_clock(entry.at), **entry.as_dict()}
    record["model_id"] = expand_vars(entry.model_id)  # the folder the model came from
    return record


def write_csv(entries: Iterable[LogEntry], path: str | Path) -> int:
    """Write `entries` as CSV with a header row; returns how many were written."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for entry in entries:
            writer.writerow(_record(entry))
            count += 1
    return count


def write_jsonl(entries: Iterable[LogEntry], path: str | Path) -> int:
    """Write `entries` as JSON Lines (one object a line); returns how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(_record(entry), ensure_ascii=False) + "\n")
            count += 1
    return count


def write_log(entries: Iterable[LogEntry], path: str | Path) -> int:
    """CSV for a ``.csv`` path, JSON Lines for anything else."""
    if Path(path).suffix.lower() == ".csv":
        return write_csv(entries, path)
    return write_jsonl(entries, path)


__all__ = ["FIELDS", "write_csv", "write_jsonl", "write_log"]
