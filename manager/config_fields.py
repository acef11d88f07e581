"""Reading one typed value out of a models.yaml mapping, or a ConfigError saying what was expected.

Each reader takes the mapping `d`, the value's `name` in it, the mapping's key path and the
`Source` (for the line). Numbers are finite and within a range (NaN and infinity would otherwise
pass a ``≥ 0`` check and overflow later, in a budget); strings hold no NUL character (the
operating system refuses one in a path, an argument or an environment value).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from .config_errors import MAX_KEY_CHARS_SHOWN, ConfigError, Source, describe, one_line, shorten

logger = logging.getLogger(__name__)

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"
#: Larger sizes are typing mistakes (a PiB of GPU memory), and they overflow as bytes.
MAX_GB = 1_000_000.0
#: About 31 years: longer timeouts overflow the operating system's waits.
MAX_SECONDS = 1e9
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE = re.compile(r"\d+(\.\d+)?\s*([KMGTP]i?B?)?", re.IGNORECASE)

_warned_unknown: set[str] = set()


def mapping(value: Any, key: str, src: Source) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise src.error(key, f"expected a mapping of keys to values, got {describe(value)}")
    return value


def string(
    d: Mapping[str, Any],
    name: str,
    key: str,
    src: Source,
    default: Any = ...,
    *,
    blank_ok: bool = True,
) -> Any:
    """The string `d[name]`; `default` when absent (required when no default is given)."""
    if name not in d or d[name] is None:
        if default is ...:
            raise src.error(f"{key}.{name}", "missing; expected a string")
        return default
    value = d[name]
    if not isinstance(value, str):
        raise src.error(f"{key}.{name}", f"expected a string, got {describe(value)}")
    if not blank_ok and not value.strip():
        raise src.error(f"{key}.{name}", f"expected a non-empty string, got {value!r}")
    return _no_nul(value, f"{key}.{name}", src)


def number(
    d: Mapping[str, Any],
    name: str,
    key: str,
    src: Source,
    default: Any,
    *,
    minimum: float = 0.0,
    maximum: float,
) -> Any:
    """`d[name]` as a float in [minimum, maximum]; NaN, infinity and booleans are refused."""
    if name not in d or d[name] is None:
        return default
    value = d[name]
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    # Comparisons that NaN fails and that a huge int makes exactly (no float overflow).
    if not is_number or not minimum <= value <= maximum:
        too_large = is_number and value > maximum
        bound = f" and ≤ {maximum:g}" if too_large else ""
        raise src.error(
            f"{key}.{name}", f"expected a number ≥ {minimum:g}{bound}, got {describe(value)}"
        )
    return float(value)


def integer(d: Mapping[str, Any], name: str, key: str, src: Source, default: Any) -> Any:
    if name not in d or d[name] is None:
        return default
    value = d[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise src.error(f"{key}.{name}", f"expected a whole number ≥ 1, got {describe(value)}")
    return value


def boolean(d: Mapping[str, Any], name: str, key: str, src: Source, default: bool) -> bool:
    if name not in d or d[name] is None:
        return default
    value = d[name]
    if not isinstance(value, bool):
        raise src.error(f"{key}.{name}", f"expected true or false, got {describe(value)}")
    return value


def sleep_level(d: Mapping[str, Any], name: str, key: str, src: Source, default: Any) -> Any:
    """What a managed server does on eviction: 0 stop, 1 or 2 sleep (vLLM's levels)."""
    if name not in d or d[name] is None:
        return default
    value = d[name]
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise src.error(
            f"{key}.{name}",
            "expected 0 (stop), 1 (sleep, weights to host RAM) or 2 (sleep, weights discarded), "
            f"got {describe(value)}",
        )
    return int(value)


def fraction(d: Mapping[str, Any], name: str, key: str, src: Source, default: float) -> float:
    """A number in (0, 1]."""
    value = d.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise src.error(f"{key}.{name}", f"expected a number in (0, 1], got {describe(value)}")
    return float(value)


def memory_size(d: Mapping[str, Any], name: str, key: str, src: Source) -> str:
    """``auto``, or a size such as ``20GB``, ``24 GiB`` or a number of bytes, as a string."""
    value = d.get(name, "auto")
    expected = "expected 'auto' or a size such as '20GB'"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 < value < float("inf"):
            raise src.error(f"{key}.{name}", f"{expected}, got {describe(value)}")
        return str(value)
    if not isinstance(value, str) or not (value == "auto" or _SIZE.fullmatch(value.strip())):
        raise src.error(f"{key}.{name}", f"{expected}, got {describe(value)}")
    return value


def argument_list(d: Mapping[str, Any], name: str, key: str, src: Source) -> tuple[str, ...] | None:
    """A command line: a non-empty list of strings (numbers are written as they read)."""
    if name not in d or d[name] is None:
        return None
    value = d[name]
    if not isinstance(value, list) or not value:
        raise src.error(f"{key}.{name}", f"expected a list of strings, got {describe(value)}")
    items = tuple(_scalar_text(v, f"{key}.{name}[{i}]", src) for i, v in enumerate(value))
    if not items[0].strip():
        raise src.error(f"{key}.{name}[0]", "expected the program to run, got an empty string")
    return items


def environment(d: Mapping[str, Any], name: str, key: str, src: Source) -> dict[str, str]:
    """Variable name → value; a name is ``[A-Za-z_][A-Za-z0-9_]*``, a value a string or number."""
    if name not in d or d[name] is None:
        return {}
    found = mapping(d[name], f"{key}.{name}", src)
    env = {}
    for variable, value in found.items():
        where = f"{key}.{name}.{variable}"
        env[_env_name(variable, where, src)] = _scalar_text(value, where, src)
    return env


def env_names(d: Mapping[str, Any], name: str, key: str, src: Source) -> tuple[str, ...]:
    """A list of environment variable names (``[A-Za-z_][A-Za-z0-9_]*``)."""
    if name not in d or d[name] is None:
        return ()
    value = d[name]
    expected = "expected a list of environment variable names"
    if not isinstance(value, list):
        raise src.error(
            f"{key}.{name}", f"expected a list of strings (variable names), got {describe(value)}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str) or not ENV_NAME.fullmatch(item):
            raise src.error(f"{key}.{name}", f"{expected}, got {describe(item)} (item {i + 1})")
    return tuple(value)


#: The flags that name a server's listening address, and the values that keep it on loopback.
HOST_FLAGS = frozenset({"--host", "--hostname"})
LOOPBACK_HOSTS = frozenset({"{host}", "127.0.0.1", "localhost", "::1"})


def quantization(d: Any, key: str, source: Source) -> str | None:
    """As written (``4bit``, ``awq``, or a number read as text); the loader decides if it can."""
    quant = d.get("quantization")
    if quant is None:
        return None
    if isinstance(quant, bool) or not isinstance(quant, str | int) or not str(quant).strip():
        raise source.error(
            f"{key}.quantization",
            f"expected a string such as '4bit' or 'awq', got {describe(quant)}",
        )
    return str(quant)


def server_problems(
    argv: tuple[str, ...] | None, key: str, source: Source
) -> tuple[ConfigError, ...]:
    """A ConfigError for each ``--host``/``--hostname`` value in `argv` that is not loopback."""
    args = argv or ()
    found = []
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        at = i if eq else i + 1  # --host=X, or --host X
        if flag not in HOST_FLAGS or at >= len(args):
            continue
        host = value if eq else args[at]
        if host.strip("[]").lower() not in LOOPBACK_HOSTS:
            found.append(
                source.error(
                    f"{key}[{at}]",
                    f"passes the host {shorten(host, 60)!r}: a managed server must listen on "
                    "loopback only (pass {host}, or 127.0.0.1, localhost or ::1); the option "
                    "cannot load",
                )
            )
    return tuple(found)


def device(d: Mapping[str, Any], key: str, src: Source) -> str:
    value = string(d, "device", key, src, "auto")
    ok = value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
    if not ok:
        raise src.error(f"{key}.device", f"expected {DEVICE_CHOICES}, got {describe(value)}")
    return "cuda:0" if value == "cuda" else value


def keep_unknown(
    d: Mapping[str, Any], known: frozenset[str], key: str, src: Source
) -> dict[str, Any]:
    """The keys this version does not know, logged once per file and key."""
    extra = {k: v for k, v in d.items() if k not in known}
    for name in extra:
        where = f"{src.file}:{key}.{name}"
        if where not in _warned_unknown:
            _warned_unknown.add(where)
            shown = one_line(shorten(f"{key}.{name}", MAX_KEY_CHARS_SHOWN))
            logger.warning("%s: unknown key %s kept but not used", src.file, shown)
    return extra


def _scalar_text(value: Any, key: str, src: Source) -> str:
    # Booleans are refused: YAML reads an unquoted yes/no/on/off as one, and str() would pass
    # "True" where "yes" was written.
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(value, str) or (is_number and abs(value) < float("inf")):
        return _no_nul(str(value), key, src)
    hint = " (quote it: YAML reads yes, no, on, off, true and false as booleans)"
    raise src.error(
        key,
        f"expected a string, got {describe(value)}" + (hint if isinstance(value, bool) else ""),
    )


def _env_name(value: Any, key: str, src: Source) -> str:
    if not isinstance(value, str) or not ENV_NAME.fullmatch(value):
        raise src.error(
            key, f"expected a variable name ([A-Za-z_][A-Za-z0-9_]*), got {describe(value)}"
        )
    return value


def _no_nul(value: str, key: str, src: Source) -> str:
    if "\0" in value:
        raise src.error(key, f"contains a NUL character (\\0), got {describe(value)}")
    return value


__all__ = [
    "DEVICE_CHOICES",
    "ENV_NAME",
    "MAX_GB",
    "MAX_SECONDS",
    "argument_list",
    "boolean",
    "device",
    "env_names",
    "environment",
    "fraction",
    "integer",
    "keep_unknown",
    "mapping",
    "memory_size",
    "number",
    "string",
]
