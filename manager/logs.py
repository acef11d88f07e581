"""The rotating log file in the user's state folder, with secrets masked.

Secrets never reach it: the value of every environment variable whose name says it holds a
key, token, secret, password or credential is masked in each line written (the manager reads API
keys only from the environment, see ``loaders/external_api.py``). The server loaders mask the
same values, and those of their ``server_env``, in what servers print
(``loaders/servers/environment.py``).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import platformdirs

LOG_NAME = "vramdeck.log"
MAX_BYTES = 1_000_000
BACKUPS = 3
MASK = "***"
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
#: Values shorter than this are not masked: they would mask ordinary words, and are no real key.
_MIN_SECRET_LEN = 6


def state_dir() -> Path:
    """``$VRAMDECK_STATE_DIR``, else the user's state folder (``~/.local/state/vramdeck``)."""
    return Path(os.environ.get("VRAMDECK_STATE_DIR") or platformdirs.user_state_dir("vramdeck"))


def secret_values(*environs: Mapping[str, str]) -> list[str]:
    """Values of the variables whose names mark them as secrets, longest first, from each of
    `environs` (default: the process's environment)."""
    found = {
        value
        for env in environs or (os.environ,)
        for name, value in env.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LEN
    }
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with every secret value (from the environment by default) replaced by ``***``."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter that masks secrets in the whole line, traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_file_logging(
    level: int = logging.INFO,
    *,
    folder: str | os.PathLike[str] | None = None,
    max_bytes: int = MAX_BYTES,
    backups: int = BACKUPS,
) -> Path:
    """Send log records of `level` and above to a rotating file; returns the file's path.

    The file is ``vramdeck.log`` in `folder` (default `state_dir()`), rotated at `max_bytes`
    keeping `backups` older files. The handler goes on the root logger, once: calling this again
    returns the same path without adding a second handler.
    """
    path = Path(folder) if folder is not None else state_dir()
    path.mkdir(parents=True, exist_ok=True)
    path = path / LOG_NAME
    root = logging.getLogger()
    for existing in root.handlers:
        if isinstance(existing, logging.handlers.RotatingFileHandler) and (
            existing.baseFilename == os.path.abspath(path)
        ):
            return path
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
    )
    handler.setLevel(level)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s")
    )
    root.addHandler(handler)
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    return path


__all__ = [
    "LOG_NAME",
    "RedactingFormatter",
    "redact",
    "secret_values",
    "setup_file_logging",
    "state_dir",
]
