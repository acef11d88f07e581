"""How the panel writes bytes, durations and times: one place, so every widget agrees."""

from __future__ import annotations

import os
import re
import time

MIB = 1024**2
GIB = 1024**3


def fmt_bytes(n: int | float | None) -> str:
    """``"—"`` for None, MiB below 1 GiB, else GiB with two decimals."""
    if n is None:
        return "—"
    if abs(n) < GIB:
        return f"{n / MIB:.0f} MiB" if abs(n) >= 10 * MIB else f"{n / MIB:.1f} MiB"
    return f"{n / GIB:.2f} GiB"


def fmt_duration(seconds: float | None) -> str:
    """``"—"``, ``"85 ms"``, ``"2.4 s"``, ``"3 min 05 s"``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


#: A Python exception's class name at the start of a message: ``FileNotFoundError: ``.
_EXCEPTION_NAME = re.compile(r"^(?:\w+\.)*[A-Z]\w*(?:Error|Exception): ")


def plain_reason(message: str, task: str = "") -> str:
    """A failure as a person reads it: without the task's name in front (the banner's title
    and the row say it already) nor the exception's class name (``FileNotFoundError: ``)."""
    if task and message.startswith(f"{task}: "):
        message = message[len(task) + 2 :]
    return _EXCEPTION_NAME.sub("", message, count=1) or message


def fmt_ago(at: float | None, now: float | None = None) -> str:
    """How long ago wall-clock time `at` was: ``"just now"``, ``"12 s ago"``, ``"3 min ago"``."""
    if at is None:
        return "—"
    age = max(0.0, (time.time() if now is None else now) - at)
    if age < 2:
        return "just now"
    if age < 60:
        return f"{age:.0f} s ago"
    if age < 3600:
        return f"{age // 60:.0f} min ago"
    return f"{age // 3600:.0f} h {age % 3600 // 60:.0f} min ago"


def fmt_clock(at: float) -> str:
    """Local time of day with milliseconds: ``"14:03:12.345"``."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def short_model_id(model_id: str) -> str:
    """A model id as a column can show it: a local folder by its last part (``gpt2-small`` for
    ``${VRAMDECK_DEMO_MODELS}/gpt2-small``), a hub id (``org/name``) unchanged."""
    if model_id.startswith(("$", "/", "~", ".")) or "\\" in model_id:
        tail = model_id.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
        return tail.strip("${}") or model_id
    return model_id


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
#: Variables never written out, whatever a config puts them in.
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def expand_vars(text: str) -> str:
    """`text` with ``${VAR}`` and ``$VAR`` replaced by the environment's values, as the
    manager reads a model id; unset variables and ones that look secret stay as written."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        found = os.environ.get(name)
        return match.group(0) if found is None or _SECRET.search(name) else found

    return _VARIABLE.sub(value, text)


def fmt_percent(part: int | float, whole: int | float) -> str:
    """``"42%"``; ``"—"`` when `whole` is 0."""
    return f"{100 * part / whole:.0f}%" if whole else "—"


__all__ = [
    "GIB",
    "MIB",
    "expand_vars",
    "fmt_ago",
    "fmt_bytes",
    "fmt_clock",
    "fmt_duration",
    "fmt_percent",
    "plain_reason",
    "short_model_id",
]
