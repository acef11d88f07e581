"""vramdeck's model manager: async, Qt-free, loads models and keeps devices under budget.

``import manager`` imports neither Qt nor torch; torch and transformers are imported by the
loaders when a model is loaded.
"""

from .config import ConfigError, InferenceConfig, ModelConfig, TaskConfig, load_config
from .errors import InsufficientMemoryError, LoadCancelledError, ModelInUseError, ModelLoadError
from .events import (
    BudgetExceeded,
    ConfigReloaded,
    Event,
    EventHub,
    LoadCancelled,
    LoadFailed,
    LoadProgress,
    MemoryNotReturned,
    MemorySampled,
    ModelCrashed,
    ModelEvent,
    ModelEvicted,
    ModelLoaded,
    ModelLoading,
    ModelRemoved,
    ModelUnloaded,
    ModelWarmedUp,
    PinChanged,
    RemovalReason,
    SelectionChanged,
    ServerOutput,
    SwitchFailed,
    TaskEvent,
)
from .ledger import Ledger
from .loaders import (
    AsyncLoader,
    ExternalAPIConfig,
    LoadContext,
    Loader,
    LoaderUnavailable,
    MissingAPIKey,
)
from .memory import DeviceReading, HostProbe, MemoryProbe, NvmlProbe, SystemProbe, TorchProbe
from .model_manager import ModelManager
from .status import BudgetCheck, TaskState, TaskStatus
from .warmup import WarmUp

__all__ = [
    "AsyncLoader",
    "BudgetCheck",
    "BudgetExceeded",
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
    "LoadCancelled",
    "LoadCancelledError",
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
    "ModelEvent",
    "ModelEvicted",
    "ModelInUseError",
    "ModelLoadError",
    "ModelLoaded",
    "ModelLoading",
    "ModelManager",
    "ModelRemoved",
    "ModelUnloaded",
    "ModelWarmedUp",
    "NvmlProbe",
    "PinChanged",
    "RemovalReason",
    "SelectionChanged",
    "ServerOutput",
    "SwitchFailed",
    "SystemProbe",
    "TaskConfig",
    "TaskEvent",
    "TaskState",
    "TaskStatus",
    "TorchProbe",
    "WarmUp",
    "load_config",
]
