"""Inference servers (vLLM, SGLang, plug-ins) run as managed child processes, one job a module:

- `commands`: the command's placeholders and flags, and the loopback rule;
- `environment`: the minimal environment a server starts with;
- `parent_death`, `output`, `group`, `process`: the child process, its output and its group;
- `registry`, `records`: the live servers, stopped at exit, and leftovers of a dead manager;
- `health`: the HTTP health check and control calls; `handle`: the running server as the
  manager's model; `requests`: the requests in flight on it;
- `loader`, `frameworks`: the loader base, and vLLM and SGLang;
- `sleep`, `sleeper`, `events`: sleep instead of stop (levels, routes, the verified sleep and
  wake, and the events they make).
"""

from __future__ import annotations

from .commands import LOOPBACK, PLACEHOLDERS, CommandValues, memory_fraction, quantization_value
from .events import ModelSlept, ModelWoken, SleepFailed
from .frameworks import SglangLoader, VllmLoader
from .handle import ServerHandle, ServerMemory
from .loader import SERVER_SLEEP_LEVEL, ServerLoader, ServerStartError
from .process import ServerProcess
from .registry import live_server_pids, stop_all_servers
from .requests import InFlight, ServerAsleepError
from .sleep import SleepError, SleepLevel, SleepReport, SleepState, WakeReport

__all__ = [
    "LOOPBACK",
    "PLACEHOLDERS",
    "SERVER_SLEEP_LEVEL",
    "CommandValues",
    "InFlight",
    "ModelSlept",
    "ModelWoken",
    "ServerAsleepError",
    "ServerHandle",
    "ServerLoader",
    "ServerMemory",
    "ServerProcess",
    "ServerStartError",
    "SglangLoader",
    "SleepError",
    "SleepFailed",
    "SleepLevel",
    "SleepReport",
    "SleepState",
    "VllmLoader",
    "WakeReport",
    "live_server_pids",
    "memory_fraction",
    "quantization_value",
    "stop_all_servers",
]
