"""Server loaders without a server: commands, flags, environment, availability, output lines."""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings

import pytest

from tests.manager.fake_server import fake_command
from vramdeck.manager.config import GIB, ModelConfig
from vramdeck.manager.loaders import LoaderRegistry, SglangLoader, VllmLoader
from vramdeck.manager.loaders import server_loader as sl
from vramdeck.manager.loaders.server_loader import (
    CommandValues,
    memory_fraction,
    quantization_value,
)
from vramdeck.manager.loaders.server_process import (
    _background,
    _in_background,
    _LineSplitter,
    describe_exit,
    free_port,
)


def option(**fields: object) -> ModelConfig:
    base: dict[str, object] = {"model_id": "org/model-7b", "framework": "vllm", "vram_gb": 20}
    return ModelConfig({**base, **fields}, name="opt")


@pytest.fixture
def vllm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sl.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_vllm_default_command(vllm_on_path: None) -> None:
    argv = VllmLoader().command(option(quantization="awq"), "cuda:0", 41234, 80 * GIB)
    assert argv == [
        "vllm", "serve", "org/model-7b", "--host", "127.0.0.1", "--port", "41234",
        "--load-format", "safetensors", "--quantization", "awq",
        "--gpu-memory-utilization", "0.25",
    ]  # fmt: skip


def test_vllm_without_its_script_runs_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sl.shutil, "which", lambda name: None)
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
    monkeypatch.setattr(sl.shutil, "which", lambda name: None)
    monkeypatch.setattr(sl.importlib.util, "find_spec", lambda name: None)
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
    splitter = _LineSplitter()
    assert splitter.feed(b"a\r\nb\rc") == ["a", "b"]
    assert splitter.feed(b"d \x1b[32mINFO\x1b[0m ok\r") == ["cd INFO ok"]
    assert splitter.feed(b"\n\n") == []
    assert splitter.feed("é".encode()[:1]) == []
    assert splitter.feed("é".encode()[1:] + b"\n") == ["é"]
    assert splitter.feed(b"x" * 5000) == ["x" * 2000]  # a line without end is cut, not kept
    assert splitter.feed(b"tail", final=True) == ["tail"]


def test_line_splitter_masks_secrets() -> None:
    splitter = _LineSplitter(["hf_abcdefgh", "sk-123456"])
    assert splitter.feed(b"token hf_abcdefgh, key sk-123456\nhf_abcd") == ["token ***, key ***"]
    assert splitter.feed(b"efgh done\n") == ["*** done"]  # a secret split across reads
    assert splitter.feed(b"\x1b[1msk-123456\x1b[0m\n") == ["***"]


@pytest.mark.parametrize("at", [1990, 1995, 1999, 2003, 4086, 4090, 4095])
def test_line_splitter_masks_a_secret_where_an_endless_line_is_cut(at: int) -> None:
    """Masked before a long line is cut to 2000 characters, and across the read that cuts it."""
    secret = "sk-0123456789"
    splitter = _LineSplitter([secret])
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
        _in_background(lambda pid: ran.append((pid, threading.current_thread())), 7)
    assert ran == [(7, threading.current_thread())]
    assert not _background


async def test_background_work_on_the_loop_runs_in_a_thread() -> None:
    ran: list[tuple[int, threading.Thread]] = []
    _in_background(lambda pid: ran.append((pid, threading.current_thread())), 8)
    await asyncio.gather(*_background)
    assert len(ran) == 1 and ran[0][0] == 8
    assert ran[0][1] is not threading.current_thread()
    assert not _background
