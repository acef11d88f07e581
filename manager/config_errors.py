"""The errors a models.yaml can cause, and where in the file they point.

Every error is a `ConfigError` (a ValueError) naming the file, the line and the key path. Two
kinds are also what code written against the original manager catches: a missing file is a
`FileNotFoundError`, text that is not YAML this reader accepts is a `yaml.YAMLError`. Values are
never printed whole in a message: `describe` shortens them, so a huge or self-multiplying value
cannot make an error message huge.
"""

from __future__ import annotations

import errno
import os
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

#: The longest key path a message prints whole; longer ones keep their start and end.
MAX_KEY_CHARS_SHOWN = 120

#: Every character str.splitlines() breaks at, written as an escape instead.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxtuple = 2, 4, 4, 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40


def shorten(text: str, limit: int) -> str:
    """`text` itself when it is at most `limit` characters, else its start and end around …."""
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return f"{text[:half]}…{text[-half:]}"


def one_line(text: str) -> str:
    """`text` with every line break written as an escape (``\\n``), for a message or a log."""
    return text.translate(_LINE_BREAKS)


def describe(value: Any) -> str:
    """A short description of a value for a message: its type and a truncated repr."""
    shown = _SHORT.repr(value)
    return shown if isinstance(value, str) else f"{type(value).__name__} {shown}"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names file, line, key and expectation."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, key: str = ""):
        self.file, self.line, self.key = file, line, key
        where = file + (f":{line}" if line else "")
        prefix = ": ".join(p for p in (where, shorten(key, MAX_KEY_CHARS_SHOWN)) if p)
        text = f"{prefix}: {message}" if prefix else message
        # One line, always: a key or value may hold a line break, and tools read one line.
        self.message = one_line(text)
        super().__init__(self.message)

    def __str__(self) -> str:
        # OSError (a base of ConfigFileNotFound) would otherwise format its errno and filename.
        return self.message


class ConfigFileNotFound(ConfigError, FileNotFoundError):
    """The config file does not exist (a FileNotFoundError, as the original manager raised)."""

    def __init__(self, file: str) -> None:
        super().__init__("no such file", file=file)
        self.errno, self.strerror, self.filename = errno.ENOENT, os.strerror(errno.ENOENT), file

    def __reduce__(self) -> tuple[Any, ...]:
        return (ConfigFileNotFound, (self.file,))


class ConfigSyntaxError(ConfigError, yaml.YAMLError):
    """Text that is not YAML this reader accepts (a yaml.YAMLError, as the original raised):
    invalid YAML, not UTF-8, duplicate keys, or past a limit on size, nesting or aliases."""


@dataclass(frozen=True)
class Source:
    """Where values come from: the file name and the line of every key path in it."""

    file: str = "<dict>"
    lines: Mapping[str, int] | None = None

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError for `key`, pointing at its line (or its nearest known parent's)."""
        return ConfigError(message, file=self.file, line=self.line_of(key), key=key)

    def line_of(self, key: str) -> int | None:
        """The line of `key` (``a.b[2].c``), else of its nearest parent that has one."""
        lines = self.lines or {}
        while key:
            found = lines.get(key)
            if found is not None:
                return found
            key = key[: max(key.rfind("."), key.rfind("["), 0)]
        return None


__all__ = [
    "ConfigError",
    "ConfigFileNotFound",
    "ConfigSyntaxError",
    "Source",
    "describe",
    "one_line",
    "shorten",
]
