"""Inference servers (vLLM, SGLang, plug-ins) run as managed child processes, one job a module:

- `commands`: the command's placeholders and flags, and the loopback rule;
- `environment`: the minimal environment a server starts with;
- `parent_death`, `output`, `group`, `process`: the child process, its output and its group;
- `registry`, `records`: the live servers, stopped at exit, and leftovers of a dead manager;
- `health`: the HTTP health check; `handle`: the running server as the manager's model;
- `loader`, `frameworks`: the loader base, and vLLM and SGLang.
"""

from __future__ import annotations

from .commands import LOOPBACK, PLACEHOLDERS, CommandValues, memory_fraction, quantization_value
from .frameworks import SglangLoader, VllmLoader
from .handle import ServerHandle, ServerMemory
from .loader import ServerLoader, ServerStartError
from .process import ServerProcess
from .registry import live_server_pids, stop_all_servers

__all__ = [
    "LOOPBACK",
    "PLACEHOLDERS",
    "CommandValues",
    "ServerHandle",
    "ServerLoader",
    "ServerMemory",
    "ServerProcess",
    "ServerStartError",
    "SglangLoader",
    "VllmLoader",
    "live_server_pids",
    "memory_fraction",
    "quantization_value",
    "stop_all_servers",
]
