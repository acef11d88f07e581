"""models.yaml → ModelConfig, TaskConfig, InferenceConfig.

Every error is a ConfigError naming the file, the line and the key path, and what was expected,
e.g. ``models.yaml:12: models.video_summarization.options.gemma.vram_gb: expected a number from 0
to 1e+06, got 'lots'``. Keys this version does not know are kept (``extra``) and logged once.
Reading the text safely is `config_yaml`'s job, reading one typed value `config_fields`'.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config_fields as fields
from .config_errors import (
    ConfigError,
    ConfigFileNotFound,
    ConfigSyntaxError,
    Source,
    describe,
    shorten,
)
from .config_yaml import MAX_BYTES, decode, read_yaml

GIB = 1024**3

#: Frameworks the seed document names; "pytorch" is served by the transformers loader.
SEED_FRAMEWORKS = ("sglang", "vllm", "pytorch", "transformers", "external_api")
DEVICE_CHOICES = fields.DEVICE_CHOICES
DTYPES = ("auto", "float32", "bfloat16", "float16")

_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_DICT_SOURCE = Source()


class ModelConfig:
    """Configuration for a single model variant.

    Attributes
    ----------
    model_id : str
        Hugging Face model identifier, local folder, or external API model name.
    framework : str
        Inference framework (sglang, vllm, pytorch, transformers, external_api, or a plug-in's).
    vram_gb : float
        VRAM requirement in GB (0 for external APIs); an estimate until measured.
    quantization, speed, description, fps, provider, api_endpoint, requires_api_key
        As in the seed document.
    name : str
        The option's name within its task.
    device, dtype, auto_class, trust_remote_code, allow_pickle, api_key_env
        Loading options vramdeck adds (see the README's config reference).
    server_command, server_env, inherit_env, startup_timeout_s, stop_timeout_s
        For options served by a managed server process.
    problems : tuple[ConfigError, ...]
        Mistakes in the option that do not stop the file loading but make the option unusable
        (a server_command that would listen beyond loopback); `vramdeck validate` reports them.
    unavailable_reason : str | None
        Why this option cannot load here (e.g. a framework with no loader), or None.
    """

    KNOWN = frozenset(
        {
            "model_id", "framework", "vram_gb", "quantization", "speed", "description", "fps",
            "provider", "api_endpoint", "requires_api_key", "device", "dtype", "auto_class",
            "trust_remote_code", "allow_pickle", "api_key_env", "server_command", "server_env",
            "inherit_env", "startup_timeout_s", "stop_timeout_s", "sleep_level",
        }
    )  # fmt: skip

    def __init__(
        self,
        config_dict: dict[str, Any],
        *,
        name: str = "",
        key: str = "",
        source: Source = _DICT_SOURCE,
    ) -> None:
        key = key or name or "option"
        d = fields.mapping(config_dict, key, source)
        self.name = name
        self.model_id: str = fields.string(d, "model_id", key, source, blank_ok=False)
        self.framework: str = fields.string(d, "framework", key, source, "transformers")
        self.vram_gb: float = fields.number(d, "vram_gb", key, source, 0.0, maximum=fields.MAX_GB)
        self.quantization: str | None = fields.quantization(d, key, source)
        self.speed: str = fields.string(d, "speed", key, source, "medium")
        self.description: str = fields.string(d, "description", key, source, "")
        self.fps: float | None = fields.number(d, "fps", key, source, None, maximum=1e6)
        self.provider: str | None = fields.string(d, "provider", key, source, None)
        self.api_endpoint: str | None = fields.string(d, "api_endpoint", key, source, None)
        self.requires_api_key: bool = fields.boolean(d, "requires_api_key", key, source, False)
        self.device: str = fields.device(d, key, source)
        self.dtype: str = fields.string(d, "dtype", key, source, "auto")
        if self.dtype not in DTYPES:
            raise source.error(
                f"{key}.dtype", f"expected one of {', '.join(DTYPES)}, got {describe(self.dtype)}"
            )
        self.auto_class: str | None = fields.string(d, "auto_class", key, source, None)
        self.trust_remote_code: bool = fields.boolean(d, "trust_remote_code", key, source, False)
        self.allow_pickle: bool = fields.boolean(d, "allow_pickle", key, source, False)
        default_env = f"{self.provider.upper()}_API_KEY" if self.provider else None
        self.api_key_env: str | None = fields.string(d, "api_key_env", key, source, default_env)
        self.server_command: tuple[str, ...] | None = fields.argument_list(
            d, "server_command", key, source
        )
        self.server_env: dict[str, str] = fields.environment(d, "server_env", key, source)
        self.inherit_env: tuple[str, ...] = fields.env_names(d, "inherit_env", key, source)
        self.startup_timeout_s: float = fields.number(
            d, "startup_timeout_s", key, source, 600.0, maximum=fields.MAX_SECONDS
        )
        self.stop_timeout_s: float = fields.number(
            d, "stop_timeout_s", key, source, 30.0, maximum=fields.MAX_SECONDS
        )
        #: Servers: 1 or 2 = sleep instead of stopping on eviction, 0 = stop; None = the default.
        self.sleep_level: int | None = fields.sleep_level(d, "sleep_level", key, source, None)
        self.extra: dict[str, Any] = fields.keep_unknown(d, self.KNOWN, key, source)
        self.problems: tuple[ConfigError, ...] = fields.server_problems(
            self.server_command, f"{key}.server_command", source
        )
        self.unavailable_reason: str | None = None

    @property
    def vram_bytes(self) -> int:
        """VRAM requirement from GB (GiB, as torch and nvidia-smi count) to bytes."""
        return int(self.vram_gb * GIB)

    @property
    def is_external(self) -> bool:
        """Whether this option calls an external API and takes no local memory."""
        return self.framework == "external_api"

    @property
    def available(self) -> bool:
        """Whether this option can load here."""
        return self.unavailable_reason is None

    def load_signature(self) -> tuple[Any, ...]:
        """Everything that decides what a load of this option produces: two options with the same
        signature load the same model the same way."""
        return (
            self.model_id, self.framework, self.device, self.dtype, self.quantization,
            self.auto_class, self.trust_remote_code, self.allow_pickle, self.api_key_env,
            self.api_endpoint, self.server_command, tuple(sorted(self.server_env.items())),
            self.inherit_env,
        )  # fmt: skip

    def unset_variables_reason(self) -> str | None:
        """Why `model_id` cannot be resolved: it names environment variables that are not set."""
        missing = sorted(set(_VARIABLE.findall(self.model_id)) - set(os.environ))
        if not missing:
            return None
        names = ", ".join(f"${name}" for name in missing)
        return f"model_id {shorten(self.model_id, 120)!r} uses {names}, which is not set"

    def resolved_model_id(self) -> str:
        """`model_id` with ``~`` and ``$VARS`` expanded, for local folders; hub ids unchanged."""
        return os.path.expanduser(os.path.expandvars(self.model_id))

    def __repr__(self) -> str:
        return (
            f"ModelConfig(name={self.name!r}, model_id={self.model_id!r}, "
            f"framework={self.framework!r}, vram_gb={self.vram_gb})"
        )


class TaskConfig:
    """Configuration for a task type with multiple model options.

    Attributes
    ----------
    task_name : str
        Name of the task.
    selected : str
        Currently selected model name.
    options : dict[str, ModelConfig]
        Available model options for this task.
    pinned : bool
        Whether the task's model is never evicted.
    priority : float
        How much losing this task's model costs, relative to others (default 1): eviction sends
        away first the model whose idle time ÷ (seconds to bring it back × priority) is highest.
    """

    KNOWN = frozenset({"selected", "options", "pinned", "description", "priority"})

    def __init__(
        self, task_name: str, config_dict: dict[str, Any], *, source: Source = _DICT_SOURCE
    ) -> None:
        key = f"models.{task_name}"
        d = fields.mapping(config_dict, key, source)
        self.task_name = task_name
        raw_options = fields.mapping(d.get("options"), f"{key}.options", source)
        if not raw_options:
            raise source.error(f"{key}.options", "expected at least one model option")
        self.options: dict[str, ModelConfig] = {
            str(name): ModelConfig(opt, name=str(name), key=f"{key}.options.{name}", source=source)
            for name, opt in raw_options.items()
        }
        self.selected: str = fields.string(d, "selected", key, source, next(iter(self.options)))
        if self.selected not in self.options:
            raise source.error(
                f"{key}.selected",
                f"names no option: {describe(self.selected)}; expected one of "
                f"{shorten(', '.join(self.options), 200)}",
            )
        self.pinned: bool = fields.boolean(d, "pinned", key, source, False)
        self.description: str = fields.string(d, "description", key, source, "")
        self.priority: float = fields.number(
            d, "priority", key, source, 1.0, minimum=0.001, maximum=1000.0
        )
        self.extra = fields.keep_unknown(d, self.KNOWN, key, source)

    def get_selected_config(self) -> ModelConfig:
        """Get the currently selected model configuration."""
        return self.options[self.selected]

    def __repr__(self) -> str:
        options = list(self.options)
        return f"TaskConfig({self.task_name!r}, selected={self.selected!r}, options={options})"


class InferenceConfig:
    """Global inference configuration settings.

    Attributes
    ----------
    max_memory_per_model : str
        Maximum memory per model ('auto' or a value such as '20GB').
    offload_threshold : float
        Fraction of a device's total memory that all processes together may use (0, 1].
    warmup_on_startup : bool
        Whether to load all models on startup.
    default_batch_size, max_batch_size : int
        Batch sizes for inference.
    memory_budget_gb : float | None
        Cap, per device, on what the manager's own models may hold.
    idle_unload_s : float | None
        Unload a model idle this long (one parked in RAM or asleep is let go too); None
        means never.
    evict_verify_timeout_s : float
        How long to wait for the device to show evicted memory free.
    server_sleep_level : int
        What managed servers do on eviction unless their option says: 0 stop, 1 or 2 sleep.
    host_cache_gb : float | None
        The host-RAM tier's budget for parked models; None: a quarter of the host's RAM; 0: off.
    thrash_reloads, thrash_window_s : int, float
        A model evicted and reloaded more than `thrash_reloads` times (default 3) within
        `thrash_window_s` seconds (default 600) raises a `Thrashing` event.
    """

    KNOWN = frozenset(
        {
            "max_memory_per_model", "offload_threshold", "warmup_on_startup",
            "default_batch_size", "max_batch_size", "memory_budget_gb", "idle_unload_s",
            "evict_verify_timeout_s", "server_sleep_level", "serving", "host_cache_gb",
            "thrash_reloads", "thrash_window_s",
        }
    )  # fmt: skip

    def __init__(
        self, config_dict: dict[str, Any] | None, *, source: Source = _DICT_SOURCE
    ) -> None:
        key = "inference"
        d = fields.mapping(config_dict if config_dict is not None else {}, key, source)
        self.max_memory_per_model: str = fields.memory_size(d, "max_memory_per_model", key, source)
        self.offload_threshold: float = fields.fraction(d, "offload_threshold", key, source, 0.85)
        self.warmup_on_startup: bool = fields.boolean(d, "warmup_on_startup", key, source, False)
        self.default_batch_size: int = fields.integer(d, "default_batch_size", key, source, 1)
        self.max_batch_size: int = fields.integer(d, "max_batch_size", key, source, 8)
        self.memory_budget_gb: float | None = fields.number(
            d, "memory_budget_gb", key, source, None, maximum=fields.MAX_GB
        )
        self.idle_unload_s: float | None = fields.number(
            d, "idle_unload_s", key, source, None, maximum=fields.MAX_SECONDS
        )
        self.evict_verify_timeout_s: float = fields.number(
            d, "evict_verify_timeout_s", key, source, 5.0, maximum=fields.MAX_SECONDS
        )
        self.server_sleep_level: int = fields.sleep_level(d, "server_sleep_level", key, source, 0)
        self.host_cache_gb: float | None = fields.number(
            d, "host_cache_gb", key, source, None, maximum=fields.MAX_GB
        )
        self.thrash_reloads: int = fields.integer(d, "thrash_reloads", key, source, 3)
        self.thrash_window_s: float = fields.number(
            d, "thrash_window_s", key, source, 600.0, maximum=fields.MAX_SECONDS
        )
        #: The endpoint's settings, checked by vramdeck.serving (the manager does not serve).
        self.serving: dict[str, Any] = dict(
            fields.mapping(d.get("serving") or {}, f"{key}.serving", source)
        )
        self.extra = fields.keep_unknown(d, self.KNOWN, key, source)

    @property
    def memory_budget_bytes(self) -> int | None:
        """`memory_budget_gb` in bytes, or None when unset."""
        return None if self.memory_budget_gb is None else int(self.memory_budget_gb * GIB)


@dataclass(frozen=True)
class Config:
    """A whole models.yaml: its raw dict, tasks and inference settings."""

    path: Path
    raw: dict[str, Any]
    tasks: dict[str, TaskConfig]
    inference: InferenceConfig


def parse_config(
    text: str, *, file: str = "<string>"
) -> tuple[dict[str, Any], dict[str, TaskConfig], InferenceConfig]:
    """Parse models.yaml text; raises ConfigError naming file, line and key on bad input (a
    ConfigSyntaxError, also a yaml.YAMLError, when the text itself cannot be read)."""
    raw, lines = read_yaml(text, file=file)
    src = Source(file, lines)
    if raw is None:
        raise ConfigError("the file is empty; expected a 'models' map", file=file)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"expected a mapping at the top level, got {describe(raw)}", file=file, line=1
        )
    if "models" not in raw:
        raise ConfigError(
            "missing the 'models' map (task name → selected and options)", file=file, key="models"
        )
    models = fields.mapping(raw["models"], "models", src)
    if not models:
        raise src.error("models", "expected at least one task")
    tasks = {str(name): TaskConfig(str(name), t, source=src) for name, t in models.items()}
    inference = InferenceConfig(raw.get("inference"), source=src)
    fields.keep_unknown(raw, frozenset({"models", "inference"}), "<top>", src)
    return raw, tasks, inference


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a models.yaml file.

    Raises ConfigFileNotFound (a FileNotFoundError) when it does not exist, ConfigSyntaxError (a
    yaml.YAMLError) when its text cannot be read, ConfigError for anything else wrong in it.
    """
    p = Path(path)
    try:
        with open(p, "rb") as stream:
            data = stream.read(MAX_BYTES + 1)  # enough to tell that a file is too large
    except FileNotFoundError:
        raise ConfigFileNotFound(str(p)) from None
    except IsADirectoryError:
        raise ConfigError("is a folder; expected a models.yaml file", file=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from None
    raw, tasks, inference = parse_config(decode(data, file=str(p)), file=str(p))
    return Config(p, raw, tasks, inference)


__all__ = [
    "GIB",
    "Config",
    "ConfigError",
    "ConfigFileNotFound",
    "ConfigSyntaxError",
    "InferenceConfig",
    "ModelConfig",
    "TaskConfig",
    "load_config",
    "parse_config",
]
