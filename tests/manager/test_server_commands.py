"""Server loaders without a server: commands, flags, environment, availability, output lines,
the registry of live servers."""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import re
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from tests.manager.fake_server import fake_command
from vramdeck.manager.config import GIB, ConfigError, ModelConfig
from vramdeck.manager.loaders import LoaderRegistry, SglangLoader, VllmLoader
from vramdeck.manager.loaders.servers import CommandValues, memory_fraction, quantization_value
from vramdeck.manager.loaders.servers.commands import free_port
from vramdeck.manager.loaders.servers.environment import (
    INHERITED_NAMES,
    INHERITED_PREFIXES,
    server_environment,
    server_secrets,
)
from vramdeck.manager.loaders.servers.output import LineSplitter
from vramdeck.manager.loaders.servers.process import describe_exit
from vramdeck.manager.loaders.servers.records import ServerRecords
from vramdeck.manager.loaders.servers.registry import LiveServers, in_background


def option(**fields: object) -> ModelConfig:
    base: dict[str, object] = {"model_id": "org/model-7b", "framework": "vllm", "vram_gb": 20}
    return ModelConfig({**base, **fields}, name="opt")


@pytest.fixture
def vllm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")


def test_vllm_default_command(vllm_on_path: None) -> None:
    argv = VllmLoader().command(option(quantization="awq"), "cuda:0", 41234, 80 * GIB)
    assert argv == [
        "vllm", "serve", "org/model-7b", "--host", "127.0.0.1", "--port", "41234",
        "--load-format", "safetensors", "--quantization", "awq",
        "--gpu-memory-utilization", "0.25",
    ]  # fmt: skip


def test_vllm_without_its_script_runs_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    argv = VllmLoader().command(option(), "cuda:1", 8000, 80 * GIB)
    assert argv[:5] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                        "org/model-7b"]  # fmt: skip


def test_sglang_default_command() -> None:
    opt = option(framework="sglang", quantization="4bit", dtype="bfloat16", trust_remote_code=True)
    argv = SglangLoader().command(opt, "cuda:0", 30000, 48 * GIB)
    assert argv == [
        sys.executable, "-m", "sglang.launch_server", "--model-path", "org/model-7b",
        "--host", "127.0.0.1", "--port", "30000", "--load-format", "safetensors",
        "--quantization", "bitsandbytes",
        "--dtype", "bfloat16", "--trust-remote-code", "--mem-fraction-static", "0.417",
    ]  # fmt: skip


@pytest.mark.parametrize("loader", [VllmLoader(), SglangLoader()], ids=["vllm", "sglang"])
def test_pickle_checkpoints_load_only_with_allow_pickle(
    loader: VllmLoader | SglangLoader, vllm_on_path: None
) -> None:
    safe = loader.command(option(), "cuda:0", 1, 80 * GIB)
    assert safe[safe.index("--load-format") + 1] == "safetensors"
    assert safe.count("--load-format") == 1
    allowed = loader.command(option(allow_pickle=True), "cuda:0", 1, 80 * GIB)
    assert "--load-format" not in allowed  # the server's own choice: auto


def test_no_memory_flag_without_an_estimate(vllm_on_path: None) -> None:
    argv = VllmLoader().command(option(vram_gb=0), "cuda:0", 1, 80 * GIB)
    assert "--gpu-memory-utilization" not in argv


@pytest.mark.parametrize(
    ("vram_gb", "total_gb", "expected"),
    [(20, 80, 0.25), (10, 24, 0.417), (0.001, 80, 0.001), (80, 80, 1.0), (0, 80, None)],
)
def test_memory_fraction(vram_gb: float, total_gb: float, expected: float | None) -> None:
    assert memory_fraction(int(vram_gb * GIB), int(total_gb * GIB)) == expected


def test_memory_fraction_refuses_more_than_the_device() -> None:
    with pytest.raises(ValueError, match=r"vram_gb 90\.00 is more than the device's 80\.00 GiB"):
        memory_fraction(90 * GIB, 80 * GIB)


@pytest.mark.parametrize(
    ("value", "flag"),
    [("awq", "awq"), ("GPTQ", "gptq"), ("fp8", "fp8"), ("4bit", "bitsandbytes"),
     ("int8", "bitsandbytes"), ("none", None), (None, None)],
)  # fmt: skip
def test_quantization_flag(value: str | None, flag: str | None) -> None:
    assert quantization_value(value) == flag


def test_server_command_placeholders() -> None:
    opt = option(server_command=["srv", "--model={model_id}", "-p", "{port}", "--mem", "{fraction}",
                                 "--json", '{"a": 1}', "{host}"])  # fmt: skip
    argv = VllmLoader().command(opt, "cuda:0", 9000, 40 * GIB)
    assert argv == ["srv", "--model=org/model-7b", "-p", "9000", "--mem", "0.5", "--json",
                    '{"a": 1}', "127.0.0.1"]  # fmt: skip


def test_fraction_placeholder_needs_an_estimate() -> None:
    values = CommandValues("m", "127.0.0.1", 1, None, "cuda:0")
    with pytest.raises(ValueError, match="no vram_gb"):
        values.substitute(["srv", "{fraction}"])
    opt = option(vram_gb=0, server_command=["srv", "{host}", "{port}", "{fraction}"])
    with pytest.raises(ValueError, match=r"uses \{fraction\} but the option has no vram_gb$"):
        VllmLoader().command(opt, "cuda:0", 1, 80 * GIB)


def test_fraction_placeholder_needs_the_device_total() -> None:
    opt = option(vram_gb=20, server_command=["srv", "{host}", "{port}", "{fraction}"])
    with pytest.raises(ValueError) as info:
        VllmLoader().command(opt, "cuda:1", 1, 0)  # the probe could not read the total
    assert str(info.value) == (
        "server_command uses {fraction} but the total memory of cuda:1 could not be read"
    )


def test_environment_pins_the_placed_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    env = VllmLoader().environment(option(server_env={"HF_HOME": "/models"}), "cuda:2")
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HF_HOME"] == "/models"
    override = VllmLoader().environment(
        option(server_env={"CUDA_VISIBLE_DEVICES": "0,1"}), "cuda:0"
    )
    assert override["CUDA_VISIBLE_DEVICES"] == "0,1"  # tensor parallel over two cards


def test_unavailable_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert VllmLoader().unavailable_reason(option()) == (
        "vLLM is not installed here: pip install vllm (or give server_command)"
    )
    sglang = SglangLoader().unavailable_reason(option(framework="sglang"))
    assert sglang is not None and 'pip install "sglang[all]"' in sglang


def test_a_server_command_makes_it_available() -> None:
    opt = option(server_command=fake_command())
    assert VllmLoader().unavailable_reason(opt) is None
    assert SglangLoader().unavailable_reason(opt) is None


def problem(*argv: str) -> str | None:
    return VllmLoader().unavailable_reason(option(server_command=list(argv)))


def test_server_command_problems() -> None:
    neither = problem(sys.executable, "-V")
    assert neither is not None and neither.startswith("server_command must pass {host} and {port}:")
    no_port = problem(sys.executable, "--host", "{host}")
    assert no_port == (
        "server_command must pass {port}: the manager picks a free port for each start"
    )
    missing = problem("no-such-srv", "--host", "{host}", "{port}")
    assert missing == "server_command's program 'no-such-srv' was not found"


def test_server_command_must_pass_the_host() -> None:
    # vLLM without --host listens on every interface, with no authentication.
    no_host = problem(sys.executable, "-m", "vllm", "--port", "{port}")
    assert no_host is not None
    assert no_host.startswith("server_command must pass {host}: ")
    assert "loopback" in no_host


@pytest.mark.parametrize(
    "argv",
    [
        ("--host", "{host}", "--port", "{port}", "--host", "0.0.0.0"),  # the last one wins
        ("--host=0.0.0.0", "--port", "{port}", "--url", "http://{host}"),
        ("--hostname", "192.168.1.5", "--port", "{port}", "{host}"),
        ("--host", "::", "--port", "{port}", "{host}"),
    ],
)
def test_server_command_must_not_listen_beyond_loopback(argv: tuple[str, ...]) -> None:
    reason = problem(sys.executable, *argv)
    assert reason is not None and reason.startswith("server_command passes the host '")
    assert "must listen on loopback only" in reason


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "{host}"])
def test_server_command_may_name_loopback(host: str) -> None:
    assert problem(sys.executable, "--host", host, "--port", "{port}", "--x", "{host}") is None
    assert problem(sys.executable, f"--host={host}", "--port", "{port}", "--x", "{host}") is None


def test_registry_serves_vllm_and_sglang() -> None:
    registry = LoaderRegistry.default()
    assert isinstance(registry.get("vllm"), VllmLoader)
    assert isinstance(registry.get("sglang"), SglangLoader)
    reason = registry.unavailable_reason(option(framework="tgi"))
    assert reason is not None and "no loader for framework 'tgi'" in reason


def test_line_splitter_handles_progress_bars_and_colours() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"a\r\nb\rc") == ["a", "b"]
    assert splitter.feed(b"d \x1b[32mINFO\x1b[0m ok\r") == ["cd INFO ok"]
    assert splitter.feed(b"\n\n") == []
    assert splitter.feed("é".encode()[:1]) == []
    assert splitter.feed("é".encode()[1:] + b"\n") == ["é"]
    assert splitter.feed(b"x" * 5000) == ["x" * 2000]  # a line without end is cut, not kept
    assert splitter.feed(b"tail", final=True) == ["tail"]


def test_line_splitter_masks_secrets() -> None:
    splitter = LineSplitter(["hf_abcdefgh", "sk-123456"])
    assert splitter.feed(b"token hf_abcdefgh, key sk-123456\nhf_abcd") == ["token ***, key ***"]
    assert splitter.feed(b"efgh done\n") == ["*** done"]  # a secret split across reads
    assert splitter.feed(b"\x1b[1msk-123456\x1b[0m\n") == ["***"]


@pytest.mark.parametrize("at", [1990, 1995, 1999, 2003, 4086, 4090, 4095])
def test_line_splitter_masks_a_secret_where_an_endless_line_is_cut(at: int) -> None:
    """Masked before a long line is cut to 2000 characters, and across the read that cuts it."""
    secret = "sk-0123456789"
    splitter = LineSplitter([secret])
    data = ("x" * at + secret + "y" * 5000).encode()
    lines = [*splitter.feed(data[:4096]), *splitter.feed(data[4096:], final=True)]
    assert lines and all(len(line) <= 2000 for line in lines)
    assert not any(secret[:3] in line for line in lines), lines
    if at > 4096 - len(secret):  # the read ended inside the secret: held back, then masked
        assert lines[1].startswith("x" * (at - 4096 + len(secret) - 1) + "***yyy")


def test_describe_exit() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "signal SIGKILL"


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_background_work_without_a_running_loop_runs_at_once() -> None:
    # At interpreter exit there is no loop: the work must be done, not left in a task that a
    # loop made for the occasion would never run.
    ran: list[tuple[int, threading.Thread]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no current event loop" deprecation either
        task = in_background(lambda pid: ran.append((pid, threading.current_thread())), 7)
    assert task is None
    assert ran == [(7, threading.current_thread())]


async def test_background_work_on_the_loop_runs_in_a_thread() -> None:
    ran: list[tuple[int, threading.Thread]] = []
    task = in_background(lambda pid: ran.append((pid, threading.current_thread())), 8)
    assert task is not None and not ran
    await task
    assert len(ran) == 1 and ran[0][0] == 8
    assert ran[0][1] is not threading.current_thread()


PANEL_ENV = {
    "PATH": "/usr/bin:/bin", "HOME": "/home/me", "LANG": "en_US.UTF-8", "LC_TIME": "C",
    "TMPDIR": "/tmp/me", "CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "hf_Secret0Token",
    "HF_HUB_OFFLINE": "1", "NCCL_P2P_DISABLE": "1", "VLLM_LOGGING_LEVEL": "DEBUG",
    "ANTHROPIC_API_KEY": "sk-ant-canary", "OPENAI_API_KEY": "sk-canary", "DISPLAY": ":0",
    "MY_LICENSE_FILE": "/opt/lic",
}  # fmt: skip


def test_a_server_gets_the_basics_and_nothing_else() -> None:
    env = server_environment(option(), "cpu", PANEL_ENV)
    dropped = {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DISPLAY", "MY_LICENSE_FILE"}
    assert env == {k: v for k, v in PANEL_ENV.items() if k not in dropped} | {
        "PYTHONUNBUFFERED": "1"
    }


def test_inherit_env_and_server_env_add_to_the_basics() -> None:
    opt = option(
        inherit_env=["MY_LICENSE_FILE", "UNSET_NAME"], server_env={"HF_HOME": "/m", "PATH": "/x"}
    )
    env = server_environment(opt, "cuda:1", PANEL_ENV)
    assert env["MY_LICENSE_FILE"] == "/opt/lic"
    assert "UNSET_NAME" not in env and "ANTHROPIC_API_KEY" not in env
    assert env["HF_HOME"] == "/m" and env["PATH"] == "/x"  # server_env has the last word
    assert env["CUDA_VISIBLE_DEVICES"] == "1"  # the placed GPU, not the panel's list


def test_secrets_of_the_whole_panel_are_masked() -> None:
    # Masked even where the server does not get them: it may read them some other way.
    assert server_secrets(option(server_env={"VLLM_API_KEY": "vllm-key-1"}), PANEL_ENV) == [
        "hf_Secret0Token", "sk-ant-canary", "vllm-key-1", "sk-canary"
    ]  # fmt: skip


def test_inherit_env_must_list_variable_names() -> None:
    assert option().inherit_env == ()
    assert option(inherit_env=["A_B", "_C1"]).inherit_env == ("A_B", "_C1")
    with pytest.raises(
        ConfigError, match=r"inherit_env: expected a list of environment variable names, got 'A=B'"
    ):
        option(inherit_env=["OK", "A=B"])
    with pytest.raises(ConfigError, match=r"inherit_env: expected a list of strings"):
        option(inherit_env="HOME")
    assert option(inherit_env=["A"]).load_signature() != option().load_signature()


def test_the_exit_hook_is_registered_by_the_first_start(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks: list[object] = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    live = LiveServers()
    assert hooks == []
    sleepers = [subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(2)]
    try:
        for proc in sleepers:
            live.add(proc.pid, stop_timeout_s=1)
        assert hooks == [live.stop_all]  # once, however many servers
        assert sorted(live.pids()) == sorted(p.pid for p in sleepers)
        live.stop_all(timeout_s=1)
        assert [p.wait(5) for p in sleepers] == [-15, -15]  # SIGTERM first
        assert live.pids() == []
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()


def test_importing_the_manager_registers_no_exit_hook_and_loads_no_http_client() -> None:
    code = (
        "import atexit, sys\n"
        "hooks = []\n"
        "atexit.register = lambda fn, *a, **k: hooks.append(getattr(fn, '__qualname__', '?'))\n"
        "import vramdeck.manager, vramdeck.manager.loaders, vramdeck.manager.loaders.servers\n"
        "print(';'.join(hooks), 'aiohttp' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    registered = out[0].split(";") if len(out) == 2 else []
    assert "LiveServers.stop_all" not in registered
    assert out[-1] == "False"


def test_the_docs_list_what_a_server_inherits() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "loaders.md").read_text("utf-8")
    listed = set(re.findall(r"`([A-Za-z_]+)`", docs))
    assert {n.upper() for n in INHERITED_NAMES} <= listed
    assert set(INHERITED_PREFIXES) <= listed


def test_a_bundled_panel_gives_servers_the_users_library_path() -> None:
    panel = {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/vramdeck/_internal"}
    assert server_environment(option(), "cpu", panel)["LD_LIBRARY_PATH"] == panel["LD_LIBRARY_PATH"]
    assert "LD_LIBRARY_PATH" not in server_environment(option(), "cpu", panel, bundled=True)
    panel["LD_LIBRARY_PATH_ORIG"] = "/usr/local/cuda/lib64"
    env = server_environment(option(), "cpu", panel, bundled=True)
    assert env["LD_LIBRARY_PATH"] == "/usr/local/cuda/lib64"


class CountingRecords(ServerRecords):
    """Real records whose reaping is counted and held at a gate until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.reaped = 0
        self.gate = threading.Event()

    def reap_orphans(self) -> list[int]:
        self.reaped += 1
        self.gate.wait(5)
        return super().reap_orphans()


async def test_orphans_are_reaped_before_the_first_start_only() -> None:
    records = CountingRecords()
    live = LiveServers(records)
    first, second = (asyncio.ensure_future(live.prepare()) for _ in range(2))
    done, _ = await asyncio.wait({first, second}, timeout=0.2)
    assert not done  # both starts wait for the leftovers to be gone (the gate is shut)
    records.gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    await live.prepare()
    assert records.reaped == 1
