"""models.yaml → ModelConfig, TaskConfig, InferenceConfig.

Every error is a ConfigError naming the file, the line and the key path, and what was expected,
e.g. ``models.yaml:12: models.video_summarization.options.gemma.vram_gb: expected a number ≥ 0,
got 'lots'``. Keys this version does not know are kept (``extra``) and logged once.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

GIB = 1024**3

#: Frameworks the seed document names; "pytorch" is served by the transformers loader.
SEED_FRAMEWORKS = ("sglang", "vllm", "pytorch", "transformers", "external_api")
DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"
DTYPES = ("auto", "float32", "bfloat16", "float16")

_warned_unknown: set[str] = set()
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names file, line, key and expectation."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, key: str = ""):
        self.file, self.line, self.key = file, line, key
        where = file + (f":{line}" if line else "")
        prefix = ": ".join(p for p in (where, key) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


@dataclass(frozen=True)
class Source:
    """Where values come from: the file name and the line of every key path in it."""

    file: str = "<dict>"
    lines: Mapping[str, int] | None = None

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError for `key`, pointing at its line (or its nearest known parent's)."""
        return ConfigError(message, file=self.file, line=self.line_of(key), key=key)

    def line_of(self, key: str) -> int | None:
        lines = self.lines or {}
        parts = key.split(".")
        while parts:
            found = lines.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return None


_DICT_SOURCE = Source()


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)


def _mapping(value: Any, key: str, src: Source) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise src.error(key, f"expected a mapping of keys to values, got {_describe(value)}")
    return value


def _string(d: Mapping[str, Any], name: str, key: str, src: Source, default: Any = ...) -> Any:
    if name not in d or d[name] is None:
        if default is ...:
            raise src.error(f"{key}.{name}", "missing; expected a string")
        return default
    value = d[name]
    if not isinstance(value, str):
        raise src.error(f"{key}.{name}", f"expected a string, got {_describe(value)}")
    return value


def _number(
    d: Mapping[str, Any], name: str, key: str, src: Source, default: Any, *, minimum: float = 0
) -> Any:
    if name not in d or d[name] is None:
        return default
    value = d[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise src.error(f"{key}.{name}", f"expected a number ≥ {minimum:g}, got {_describe(value)}")
    return value


def _integer(d: Mapping[str, Any], name: str, key: str, src: Source, default: Any) -> Any:
    if name not in d or d[name] is None:
        return default
    value = d[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise src.error(f"{key}.{name}", f"expected a whole number ≥ 1, got {_describe(value)}")
    return value


def _boolean(d: Mapping[str, Any], name: str, key: str, src: Source, default: bool) -> bool:
    if name not in d or d[name] is None:
        return default
    value = d[name]
    if not isinstance(value, bool):
        raise src.error(f"{key}.{name}", f"expected true or false, got {_describe(value)}")
    return value


def _string_list(d: Mapping[str, Any], name: str, key: str, src: Source) -> tuple[str, ...] | None:
    if name not in d or d[name] is None:
        return None
    value = d[name]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise src.error(f"{key}.{name}", f"expected a list of strings, got {_describe(value)}")
    return tuple(str(v) for v in value)


def _string_map(d: Mapping[str, Any], name: str, key: str, src: Source) -> dict[str, str]:
    if name not in d or d[name] is None:
        return {}
    value = _mapping(d[name], f"{key}.{name}", src)
    return {str(k): str(v) for k, v in value.items()}


def _variable_names(d: Mapping[str, Any], name: str, key: str, src: Source) -> tuple[str, ...]:
    names = _string_list(d, name, key, src) or ()
    for value in names:
        if not _VARIABLE_NAME.fullmatch(value):
            raise src.error(
                f"{key}.{name}", f"expected a list of environment variable names, got {value!r}"
            )
    return names


def _sleep_level(d: Mapping[str, Any], name: str, key: str, src: Source, default: Any) -> Any:
    if name not in d or d[name] is None:
        return default
    value = d[name]
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise src.error(
            f"{key}.{name}",
            f"expected 0 (stop), 1 (sleep, weights to host RAM) or 2 (sleep, weights discarded), "
            f"got {_describe(value)}",
        )
    return int(value)


def _keep_unknown(d: Mapping[str, Any], known: frozenset[str], key: str, src: Source) -> dict:
    extra = {k: v for k, v in d.items() if k not in known}
    for name in extra:
        where = f"{src.file}:{key}.{name}"
        if where not in _warned_unknown:
            _warned_unknown.add(where)
            logger.warning("%s: unknown key %s.%s kept but not used", src.file, key, name)
    return extra


def _device(d: Mapping[str, Any], key: str, src: Source) -> str:
    value = _string(d, "device", key, src, "auto")
    ok = value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
    if not ok:
        raise src.error(f"{key}.device", f"expected {DEVICE_CHOICES}, got {value!r}")
    return "cuda:0" if value == "cuda" else value


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
    unavailable_reason : str | None
        Why this option cannot load here (e.g. a framework with no loader), or None.
    """

    KNOWN = frozenset(
        {
            "model_id", "framework", "vram_gb", "quantization", "speed", "description", "fps",
            "provider", "api_endpoint", "requires_api_key", "device", "dtype", "auto_class",
            "trust_remote_code", "allow_pickle", "api_key_env", "server_command", "server_env",
            "startup_timeout_s", "stop_timeout_s", "inherit_env", "sleep_level",
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
        d = _mapping(config_dict, key, source)
        self.name = name
        self.model_id: str = _string(d, "model_id", key, source)
        self.framework: str = _string(d, "framework", key, source, "transformers")
        self.vram_gb: float = float(_number(d, "vram_gb", key, source, 0.0))
        quant = d.get("quantization")
        if quant is not None and not isinstance(quant, str | int):
            raise source.error(f"{key}.quantization", f"expected a string, got {_describe(quant)}")
        self.quantization: str | None = None if quant is None else str(quant)
        self.speed: str = _string(d, "speed", key, source, "medium")
        self.description: str = _string(d, "description", key, source, "")
        self.fps: int | None = _number(d, "fps", key, source, None)
        self.provider: str | None = _string(d, "provider", key, source, None)
        self.api_endpoint: str | None = _string(d, "api_endpoint", key, source, None)
        self.requires_api_key: bool = _boolean(d, "requires_api_key", key, source, False)
        self.device: str = _device(d, key, source)
        self.dtype: str = _string(d, "dtype", key, source, "auto")
        if self.dtype not in DTYPES:
            raise source.error(
                f"{key}.dtype", f"expected one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        self.auto_class: str | None = _string(d, "auto_class", key, source, None)
        self.trust_remote_code: bool = _boolean(d, "trust_remote_code", key, source, False)
        self.allow_pickle: bool = _boolean(d, "allow_pickle", key, source, False)
        default_env = f"{self.provider.upper()}_API_KEY" if self.provider else None
        self.api_key_env: str | None = _string(d, "api_key_env", key, source, default_env)
        self.server_command: tuple[str, ...] | None = _string_list(d, "server_command", key, source)
        self.server_env: dict[str, str] = _string_map(d, "server_env", key, source)
        self.inherit_env: tuple[str, ...] = _variable_names(d, "inherit_env", key, source)
        self.startup_timeout_s: float = float(_number(d, "startup_timeout_s", key, source, 600.0))
        self.stop_timeout_s: float = float(_number(d, "stop_timeout_s", key, source, 30.0))
        #: Servers: 1 or 2 = sleep instead of stopping on eviction, 0 = stop; None = the default.
        self.sleep_level: int | None = _sleep_level(d, "sleep_level", key, source, None)
        self.extra: dict[str, Any] = _keep_unknown(d, self.KNOWN, key, source)
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
        return f"model_id {self.model_id!r} uses {names}, which is not set"

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
    """

    KNOWN = frozenset({"selected", "options", "pinned", "description"})

    def __init__(
        self, task_name: str, config_dict: dict[str, Any], *, source: Source = _DICT_SOURCE
    ) -> None:
        key = f"models.{task_name}"
        d = _mapping(config_dict, key, source)
        self.task_name = task_name
        raw_options = _mapping(d.get("options"), f"{key}.options", source)
        if not raw_options:
            raise source.error(f"{key}.options", "expected at least one model option")
        self.options: dict[str, ModelConfig] = {
            str(name): ModelConfig(opt, name=str(name), key=f"{key}.options.{name}", source=source)
            for name, opt in raw_options.items()
        }
        self.selected: str = _string(d, "selected", key, source, next(iter(self.options)))
        if self.selected not in self.options:
            raise source.error(
                f"{key}.selected",
                f"names no option: {self.selected!r}; expected one of {', '.join(self.options)}",
            )
        self.pinned: bool = _boolean(d, "pinned", key, source, False)
        self.description: str = _string(d, "description", key, source, "")
        self.extra = _keep_unknown(d, self.KNOWN, key, source)

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
        Unload a model idle this long; None means never.
    evict_verify_timeout_s : float
        How long to wait for the device to show evicted memory free.
    server_sleep_level : int
        What managed servers do on eviction unless their option says: 0 stop, 1 or 2 sleep.
    """

    KNOWN = frozenset(
        {
            "max_memory_per_model", "offload_threshold", "warmup_on_startup",
            "default_batch_size", "max_batch_size", "memory_budget_gb", "idle_unload_s",
            "evict_verify_timeout_s", "server_sleep_level",
        }
    )  # fmt: skip

    def __init__(self, config_dict: dict[str, Any], *, source: Source = _DICT_SOURCE) -> None:
        key = "inference"
        d = _mapping(config_dict if config_dict is not None else {}, key, source)
        mm = d.get("max_memory_per_model", "auto")
        if not isinstance(mm, str | int | float) or isinstance(mm, bool):
            raise source.error(
                f"{key}.max_memory_per_model", f"expected 'auto' or a size, got {_describe(mm)}"
            )
        self.max_memory_per_model: str = str(mm)
        threshold = d.get("offload_threshold", 0.9)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1
        ):
            raise source.error(
                f"{key}.offload_threshold",
                f"expected a number in (0, 1], got {_describe(threshold)}",
            )
        self.offload_threshold: float = float(threshold)
        self.warmup_on_startup: bool = _boolean(d, "warmup_on_startup", key, source, False)
        self.default_batch_size: int = _integer(d, "default_batch_size", key, source, 1)
        self.max_batch_size: int = _integer(d, "max_batch_size", key, source, 8)
        budget = _number(d, "memory_budget_gb", key, source, None)
        self.memory_budget_gb: float | None = None if budget is None else float(budget)
        idle = _number(d, "idle_unload_s", key, source, None)
        self.idle_unload_s: float | None = None if idle is None else float(idle)
        self.evict_verify_timeout_s: float = float(
            _number(d, "evict_verify_timeout_s", key, source, 5.0)
        )
        self.server_sleep_level: int = _sleep_level(d, "server_sleep_level", key, source, 0)
        self.extra = _keep_unknown(d, self.KNOWN, key, source)

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


def _line_map(text: str) -> dict[str, int]:
    """Key path → 1-based line, read from the YAML node tree (composed by the safe loader)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = f"{path}.{key_node.value}" if path else str(key_node.value)
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)

    if root is not None:
        walk(root, "")
    return lines


def parse_config(
    text: str, *, file: str = "<string>"
) -> tuple[dict[str, Any], dict[str, TaskConfig], InferenceConfig]:
    """Parse models.yaml text; raises ConfigError naming file, line and key on bad input."""
    try:
        raw = yaml.safe_load(text)
        lines = _line_map(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", file=file, line=line) from None
    src = Source(file, lines)
    if raw is None:
        raise ConfigError("the file is empty; expected a 'models' map", file=file)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"expected a mapping at the top level, got {_describe(raw)}", file=file, line=1
        )
    if "models" not in raw:
        raise ConfigError(
            "missing the 'models' map (task name → selected and options)", file=file, key="models"
        )
    models = _mapping(raw["models"], "models", src)
    if not models:
        raise src.error("models", "expected at least one task")
    tasks = {str(name): TaskConfig(str(name), t, source=src) for name, t in models.items()}
    inference = InferenceConfig(raw.get("inference") or {}, source=src)
    _keep_unknown(raw, frozenset({"models", "inference"}), "<top>", src)
    return raw, tasks, inference


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a models.yaml file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from None
    raw, tasks, inference = parse_config(text, file=str(p))
    return Config(p, raw, tasks, inference)


__all__ = [
    "GIB",
    "Config",
    "ConfigError",
    "InferenceConfig",
    "ModelConfig",
    "TaskConfig",
    "load_config",
    "parse_config",
]
