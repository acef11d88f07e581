"""The environment a server starts with: least privilege.

A server gets what a process needs to run (PATH, HOME, locale, temporary folder, proxies and CA
certificates for downloads), what CUDA, NCCL, PyTorch, Hugging Face and the servers themselves
read, and nothing else of the manager's environment: provider keys (``ANTHROPIC_API_KEY``,
``OPENAI_API_KEY``, …) and whatever else the panel was started with stay out. An option's
``inherit_env`` names more variables to pass on; its ``server_env`` sets variables outright.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.logs import secret_values
from vramdeck.manager.memory import device_index, is_cuda

#: Variables passed on by name.
INHERITED_NAMES = frozenset(
    {
        # the system basics
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
        "TMPDIR", "TMP", "TEMP", "LD_LIBRARY_PATH",
        "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
        # where the server's Python finds its packages
        "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV",
        # downloads of weights: proxies and certificates
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
        "http_proxy", "https_proxy", "no_proxy", "all_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        # threads
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM",
        # other accelerators' device selection
        "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    }
)  # fmt: skip
#: Variables passed on by prefix: the locale, and what the GPU stack and the servers read.
INHERITED_PREFIXES = (
    "LC_", "CUDA_", "NVIDIA_", "NCCL_", "TORCH_", "PYTORCH_", "TORCHINDUCTOR_", "TRITON_",
    "HF_", "HUGGINGFACE_", "HUGGING_FACE_", "TRANSFORMERS_", "VLLM_", "SGLANG_",
)  # fmt: skip


def inherited(name: str) -> bool:
    """Whether a server gets the manager's variable `name` without being told to."""
    return name in INHERITED_NAMES or name.startswith(INHERITED_PREFIXES)


def server_environment(
    option: ModelConfig,
    device: str,
    parent: Mapping[str, str],
    *,
    bundled: bool = getattr(sys, "frozen", False),
) -> dict[str, str]:
    """The environment `option`'s server starts with on `device`, from the manager's `parent`:
    the inherited variables and `inherit_env`'s, unbuffered output, the placed GPU, then
    ``server_env`` (which overrides all of them). `bundled`: the manager runs from a PyInstaller
    bundle."""
    extra = set(option.inherit_env)
    env = {k: v for k, v in parent.items() if inherited(k) or k in extra}
    if bundled:
        # The bundle points LD_LIBRARY_PATH at its own libraries and keeps the user's in
        # LD_LIBRARY_PATH_ORIG; a server must find the system's CUDA, not the bundle's copies.
        env.pop("LD_LIBRARY_PATH", None)
        if "LD_LIBRARY_PATH_ORIG" in parent:
            env["LD_LIBRARY_PATH"] = parent["LD_LIBRARY_PATH_ORIG"]
    env["PYTHONUNBUFFERED"] = "1"
    if is_cuda(device):
        # The manager's cuda:N is NVML's N, which counts in PCI bus order.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = str(device_index(device))
    env.update(option.server_env)
    return env


def server_secrets(option: ModelConfig, parent: Mapping[str, str]) -> list[str]:
    """What is masked in the server's output: the values of the variables whose names mark them
    as secrets (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL), the manager's and ``server_env``'s.

    All of the manager's, not only those the server gets: a server may print what it read from
    a file or was handed some other way."""
    return secret_values(parent, option.server_env)
