"""What a server is started with: the command's placeholders, its common flags, and the rule
that it listens on loopback only, on a port the manager picks."""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from vramdeck.manager.config import GIB, ModelConfig

LOOPBACK = "127.0.0.1"
#: Placeholders a ``server_command`` may use.
PLACEHOLDERS = ("model_id", "host", "port", "fraction")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
#: Config quantization values that mean bitsandbytes loading in vLLM and SGLang.
_BITSANDBYTES = frozenset({"4bit", "8bit", "int4", "int8", "nf4", "bnb", "bitsandbytes"})
_NO_QUANTIZATION = frozenset({"", "none", "no", "false"})
#: Flags that set where a server listens, and the only hosts a server_command may pass them.
_HOST_FLAGS = frozenset({"--host", "--hostname"})
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` now (a server started right away will get it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def memory_fraction(vram_bytes: int, total_bytes: int) -> float | None:
    """`vram_bytes` as a share of the device's `total_bytes`, rounded up to 0.001.

    None when either is unknown (0). ValueError when the model needs more than the device has.
    """
    if vram_bytes <= 0 or total_bytes <= 0:
        return None
    if vram_bytes > total_bytes:
        raise ValueError(
            f"vram_gb {vram_bytes / GIB:.2f} is more than the device's {total_bytes / GIB:.2f} GiB"
        )
    return min(1.0, math.ceil(vram_bytes / total_bytes * 1000) / 1000)


def quantization_value(quantization: str | None) -> str | None:
    """The value of the servers' ``--quantization`` flag for the config's `quantization`."""
    if quantization is None or quantization.strip().lower() in _NO_QUANTIZATION:
        return None
    q = quantization.strip().lower()
    return "bitsandbytes" if q in _BITSANDBYTES else q


@dataclass(frozen=True)
class CommandValues:
    """What a server command is built from.

    `vram_bytes` and `total_bytes` (the option's estimate and the device's total, 0 when unknown)
    say why `fraction` is None.
    """

    model_id: str
    host: str
    port: int
    fraction: float | None
    device: str
    vram_bytes: int = 0
    total_bytes: int = 0

    @classmethod
    def for_option(
        cls, option: ModelConfig, device: str, port: int, total_bytes: int
    ) -> CommandValues:
        """The values that start `option` on `device` (of `total_bytes`) at `port`, on loopback."""
        return cls(
            model_id=option.resolved_model_id(),
            host=LOOPBACK,
            port=port,
            fraction=memory_fraction(option.vram_bytes, total_bytes),
            device=device,
            vram_bytes=option.vram_bytes,
            total_bytes=total_bytes,
        )

    def substitute(self, argv: Sequence[str]) -> list[str]:
        """`argv` with ``{model_id}``, ``{host}``, ``{port}`` and ``{fraction}`` filled in.

        Other braces (a JSON argument, say) are left as they are.
        """

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "fraction":
                if self.fraction is None:
                    raise ValueError(f"server_command uses {{fraction}} but {self._no_fraction()}")
                return f"{self.fraction:g}"
            return str(getattr(self, name))

        return [_PLACEHOLDER.sub(fill, arg) for arg in argv]

    def _no_fraction(self) -> str:
        """Why there is no `fraction`."""
        if self.vram_bytes <= 0:
            return "the option has no vram_gb"
        return f"the total memory of {self.device} could not be read"


def command_problem(argv: Sequence[str]) -> str | None:
    """Why a ``server_command`` cannot be run, or None: it must pass ``{host}`` and ``{port}``,
    listen on loopback only, and name a program that exists."""
    missing = [p for p in ("{host}", "{port}") if not any(p in arg for arg in argv)]
    if missing:
        why = {
            "{host}": "the server must listen on loopback only (a server left to choose, like "
            "vLLM, listens on every interface, without authentication)",
            "{port}": "the manager picks a free port for each start",
        }
        return f"server_command must pass {' and '.join(missing)}: " + "; ".join(
            why[p] for p in missing
        )
    for host in _hosts_passed(argv):
        if host != "{host}" and host.strip("[]").lower() not in _LOOPBACK_NAMES:
            return (
                f"server_command passes the host {host!r}: the server must listen on loopback "
                "only (pass {host}, or 127.0.0.1, localhost or ::1)"
            )
    program = argv[0]
    if shutil.which(program) is None and not (
        os.path.isfile(program) and os.access(program, os.X_OK)
    ):
        return f"server_command's program {program!r} was not found"
    return None


def _hosts_passed(argv: Sequence[str]) -> list[str]:
    """The values of every ``--host``/``--hostname`` flag in `argv` (``--host X``, ``--host=X``)."""
    hosts = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag not in _HOST_FLAGS:
            continue
        if eq:
            hosts.append(value)
        elif i + 1 < len(argv):
            hosts.append(argv[i + 1])
    return hosts


def common_flags(option: ModelConfig, values: CommandValues) -> list[str]:
    """The flags vLLM and SGLang share: where to listen, and how to load (safetensors only
    unless ``allow_pickle``, quantization, dtype, remote code)."""
    flags = ["--host", values.host, "--port", str(values.port)]
    if not option.allow_pickle:  # pickle checkpoints (.bin, .pt) can run code when read
        flags += ["--load-format", "safetensors"]
    quantization = quantization_value(option.quantization)
    if quantization:
        flags += ["--quantization", quantization]
    if option.dtype != "auto":
        flags += ["--dtype", option.dtype]
    if option.trust_remote_code:
        flags.append("--trust-remote-code")
    return flags
