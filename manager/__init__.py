"""vramdeck's model manager: async, Qt-free, loads models and keeps devices under budget.

``import manager`` imports neither Qt nor torch; torch and transformers are imported by the
loaders when a model is loaded.
"""

from .config import ConfigError, InferenceConfig, ModelConfig, TaskConfig, load_config
from .errors import InsufficientMemoryError, ModelInUseError, ModelLoadError
from .events import (
    ConfigReloaded,
    Event,
    EventHub,
    LoadFailed,
    LoadProgress,
    MemoryNotReturned,
    MemorySampled,
    ModelCrashed,
    ModelEvicted,
    ModelLoaded,
    ModelLoading,
    ModelUnloaded,
    PinChanged,
    SelectionChanged,
    ServerOutput,
)
from .ledger import Ledger
from .loaders import ExternalAPIConfig, LoadContext, Loader, LoaderUnavailable, MissingAPIKey
from .memory import DeviceReading, HostProbe, MemoryProbe, NvmlProbe, SystemProbe, TorchProbe
from .model_manager import ModelManager

__all__ = [
    "ConfigError",
    "ConfigReloaded",
    "DeviceReading",
    "Event",
    "EventHub",
    "ExternalAPIConfig",
    "HostProbe",
    "InferenceConfig",
    "InsufficientMemoryError",
    "Ledger",
    "LoadContext",
    "LoadFailed",
    "LoadProgress",
    "Loader",
    "LoaderUnavailable",
    "MemoryNotReturned",
    "MemoryProbe",
    "MemorySampled",
    "MissingAPIKey",
    "ModelConfig",
    "ModelCrashed",
    "ModelEvicted",
    "ModelInUseError",
    "ModelLoadError",
    "ModelLoaded",
    "ModelLoading",
    "ModelManager",
    "ModelUnloaded",
    "NvmlProbe",
    "PinChanged",
    "SelectionChanged",
    "ServerOutput",
    "SystemProbe",
    "TaskConfig",
    "TorchProbe",
    "load_config",
]
