"""The built-in server loaders: vLLM and SGLang."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from typing import ClassVar

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.memory import is_cuda

from .commands import CommandValues, common_flags
from .loader import ServerLoader


class VllmLoader(ServerLoader):
    """vLLM's OpenAI-compatible server (``vllm serve``)."""

    frameworks: ClassVar[tuple[str, ...]] = ("vllm",)
    display_name: ClassVar[str] = "vLLM"
    install_hint: ClassVar[str] = "pip install vllm"

    def installed(self) -> bool:
        return shutil.which("vllm") is not None or importlib.util.find_spec("vllm") is not None

    def default_command(self, option: ModelConfig, values: CommandValues) -> list[str]:
        if shutil.which("vllm") is not None:
            argv = ["vllm", "serve", values.model_id]
        else:  # importable, but its script is not on PATH (e.g. a venv that is not activated)
            argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
            argv += ["--model", values.model_id]
        argv += common_flags(option, values)
        if values.fraction is not None and is_cuda(values.device):
            argv += ["--gpu-memory-utilization", f"{values.fraction:g}"]
        return argv


class SglangLoader(ServerLoader):
    """SGLang's server (``python -m sglang.launch_server``)."""

    frameworks: ClassVar[tuple[str, ...]] = ("sglang",)
    display_name: ClassVar[str] = "SGLang"
    install_hint: ClassVar[str] = 'pip install "sglang[all]"'

    def installed(self) -> bool:
        return importlib.util.find_spec("sglang") is not None

    def default_command(self, option: ModelConfig, values: CommandValues) -> list[str]:
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", values.model_id]
        argv += common_flags(option, values)
        if values.fraction is not None:
            argv += ["--mem-fraction-static", f"{values.fraction:g}"]
        return argv
