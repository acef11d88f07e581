"""In-process models through Hugging Face transformers (frameworks ``transformers``, ``pytorch``).

torch and transformers are imported here, inside the methods, so ``import manager`` stays fast.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any, ClassVar

from vramdeck.manager.collection import collect_garbage
from vramdeck.manager.config import ModelConfig
from vramdeck.manager.config_errors import shorten
from vramdeck.manager.errors import LoadCancelledError
from vramdeck.manager.memory import is_cuda
from vramdeck.manager.residency import Residency
from vramdeck.manager.units import format_bytes

from . import meta_init
from .base import LoadContext, LoaderUnavailable, Parked, Restored
from .checkpoint_reading import reading_reported

logger = logging.getLogger(__name__)

_BITS = {
    "4bit": "load_in_4bit",
    "8bit": "load_in_8bit",
    "int4": "load_in_4bit",
    "int8": "load_in_8bit",
}


def _free_cached(device: str, *, collect: bool = False) -> None:
    """Return CUDA's cached blocks to the driver; with `collect`, first free the tensors that
    only reference cycles still hold (a failed load's traceback frames), through
    `collection.collect_garbage` (an app with Qt objects collects on its GUI thread). Not on
    every unload: a full collection holds the GIL for a while."""
    if collect:
        collect_garbage()
    if is_cuda(device):
        import torch

        if torch.cuda.is_available():
            with torch.cuda.device(device):
                torch.cuda.empty_cache()


class TransformersLoader:
    """Loads a model with ``from_pretrained`` onto one device, dtype and Auto class."""

    frameworks: ClassVar[tuple[str, ...]] = ("transformers", "pytorch")
    holds_device_memory: ClassVar[bool] = True
    #: An evicted model may be parked in host RAM (see manager/parking.py) instead of dropped.
    suspends_to: ClassVar[Residency] = Residency.HOST

    def unavailable_reason(self, option: ModelConfig) -> str | None:
        for package in ("torch", "transformers"):
            if importlib.util.find_spec(package) is None:
                return f"needs the {package} package: pip install {package}"
        if option.quantization in _BITS and importlib.util.find_spec("bitsandbytes") is None:
            return (
                f"quantization {option.quantization!r} needs bitsandbytes: pip install bitsandbytes"
            )
        return unreadable_reason(option)

    def source_problem(self, option: ModelConfig) -> str | None:
        """A local model folder that is not there, or that holds only pickle weights the option
        does not allow: said before any model is evicted for the load."""
        if option.unset_variables_reason():
            return None  # the manager reports the unset variable
        try:
            _check_local_folder(option.resolved_model_id(), option)
        except (FileNotFoundError, ValueError) as exc:
            return str(exc)
        return None

    def prepare(self, device: str) -> None:
        """Create the CUDA context before the manager's first reading: it is not a model's."""
        if is_cuda(device):
            import torch

            torch.zeros(1, device=device)

    def load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        reason = self.unavailable_reason(option)
        if reason:
            raise LoaderUnavailable(reason)
        try:
            return self._load(option, ctx)
        except LoadCancelledError:
            pass  # below, once the frames that hold the weights read so far are gone
        except BaseException as exc:
            # The weights read so far are the locals of the frames the traceback keeps: free
            # them now, whatever holds the error later (the lines of the traceback stay).
            traceback.clear_frames(exc.__traceback__)
            _free_cached(ctx.device, collect=True)
            raise
        _free_cached(ctx.device, collect=True)
        raise LoadCancelledError(ctx.task, "the load was cancelled while reading weights")

    def _load(self, option: ModelConfig, ctx: LoadContext) -> Any:
        import torch
        import transformers

        source = option.resolved_model_id()
        _check_local_folder(source, option)
        ctx.progress(None, "reading config")
        config = transformers.AutoConfig.from_pretrained(
            source, trust_remote_code=option.trust_remote_code
        )
        model_class = self._model_class(transformers, option, config)
        kwargs: dict[str, Any] = {
            "config": config,
            "trust_remote_code": option.trust_remote_code,
            "dtype": "auto" if option.dtype == "auto" else getattr(torch, option.dtype),
            # Pickle (.bin) checkpoints can run code when read; only when the config says so.
            "use_safetensors": None if option.allow_pickle else True,
        }
        if option.quantization in _BITS:
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(  # type: ignore[no-untyped-call]
                **{_BITS[option.quantization]: True}
            )
        if is_cuda(ctx.device):
            kwargs["device_map"] = ctx.device
        stage = f"reading weights ({model_class.__name__})"
        ctx.progress(None, stage)

        def read(done: int, total: int) -> None:
            if total:
                ctx.progress(done / total, stage)

        meta_init.install()  # the model is built on the meta device: nothing to initialise
        with reading_reported(read) as reading:
            model = model_class.from_pretrained(source, **kwargs)
        if reading is not None and reading.total:
            ctx.progress(1.0, f"read {format_bytes(reading.total)} of weights")
        if not is_cuda(ctx.device) and option.quantization not in _BITS:
            ctx.progress(None, f"moving to {ctx.device}")
            model = model.to(ctx.device)
        model.eval()
        ctx.progress(1.0, "ready")
        return model

    @staticmethod
    def _model_class(transformers: Any, option: ModelConfig, config: Any) -> Any:
        if option.auto_class:
            cls = getattr(transformers, option.auto_class, None)
            if cls is None:
                raise ValueError(f"auto_class {option.auto_class!r} is not a transformers class")
            return cls
        for arch in getattr(config, "architectures", None) or ():
            cls = getattr(transformers, arch, None)
            if cls is not None:
                return cls
        return transformers.AutoModel

    def footprint(self, model: Any, device: str) -> int | None:
        """Bytes of the model's parameters and buffers (shared storages counted once)."""
        seen: set[int] = set()
        total = 0
        for tensor in (*model.parameters(), *model.buffers()):
            storage = tensor.untyped_storage()
            if storage.data_ptr() in seen or tensor.device.type == "meta":
                continue
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return total

    def unload(self, model: Any, device: str) -> None:
        # Moving to "meta" frees every weight even while a caller still holds the module (no
        # garbage collection needed), so an unload really gives the memory back; a caller that
        # uses it afterwards gets a clear error.
        try:
            model.to("meta")
        except Exception:  # noqa: BLE001 - any model class: dropping its references still frees
            logger.debug("could not move %s to meta; relying on dropped references", type(model))
        _free_cached(device)

    def check(self, model: Any) -> None:
        return None

    def can_suspend(self, model: Any) -> bool:
        """Plain torch modules on one device park; quantized or spread ones are dropped."""
        from vramdeck.manager.parking import unparkable_reason

        return unparkable_reason(model) is None

    def would_suspend(self, option: ModelConfig, ctx: LoadContext) -> bool:
        """A model this loader makes is a torch module on `ctx.device` alone: it parks unless
        bitsandbytes quantizes it (a checkpoint quantized in its own files is seen only once it
        is loaded)."""
        return option.quantization not in _BITS

    def suspend(self, model: Any, device: str) -> Parked:
        """Park: copy the tensors to pinned host memory and give the device memory back."""
        import torch

        from vramdeck.manager.parking import park

        started = time.monotonic()
        host_bytes = park(model, pin=is_cuda(device) and torch.cuda.is_available())
        _free_cached(device)
        return Parked(host_bytes=host_bytes, duration_s=time.monotonic() - started)

    def resume(self, model: Any, device: str) -> Restored:
        """Copy a parked model back to `device`; on failure free what was copied, then raise."""
        from vramdeck.manager.parking import restore

        started = time.monotonic()
        try:
            taken = restore(model, device)
        except BaseException:
            self.unload(model, device)
            raise
        return Restored(taken_bytes=taken, duration_s=time.monotonic() - started)


#: Single-file checkpoints of other frameworks: transformers reads a folder or a hub id only.
_OTHER_CHECKPOINTS = {
    ".pt": "a PyTorch checkpoint (as YOLO ships)",
    ".pth": "a PyTorch checkpoint",
    ".ckpt": "a Lightning or TensorFlow checkpoint",
    ".onnx": "an ONNX model",
    ".engine": "a TensorRT engine",
    ".tflite": "a TensorFlow Lite model",
    ".gguf": "a GGUF model (llama.cpp)",
    ".safetensors": "a single weights file",
    ".bin": "a single weights file",
}
_PLUGIN_HINT = (
    "load it with a loader plug-in for its framework (a package that provides one in the "
    "'vramdeck.loaders' entry-point group, e.g. for ultralytics or onnxruntime) and set the "
    "option's framework to that plug-in's"
)


def unreadable_reason(option: ModelConfig) -> str | None:
    """Why transformers cannot load `option` as configured, found before trying: a quantization it
    cannot apply, or a checkpoint that is not a transformers model (a ``.pt`` file, a folder with
    no config.json); None when nothing is known to be wrong."""
    if option.quantization is not None and option.quantization not in _BITS:
        return (
            f"transformers cannot apply quantization {shorten(option.quantization, 40)!r}: use "
            f"{', '.join(_BITS)} (bitsandbytes), or leave it out for a checkpoint that is "
            "already quantized (its config.json says how), or serve the option with vllm or "
            "sglang, which take awq, gptq, fp8, …"
        )
    if option.unset_variables_reason():
        return None  # the manager reports the unset variable
    source = option.resolved_model_id()
    kind = _OTHER_CHECKPOINTS.get(Path(source).suffix.lower())
    if kind is not None and (os.path.isfile(source) or not _looks_local(source)):
        return (
            f"model_id {shorten(source, 160)!r} is {kind}, not a transformers model (a folder with "
            f"config.json, or a hub id): {_PLUGIN_HINT}"
        )
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "config.json")):
        return (
            f"the folder {shorten(source, 160)} has no config.json, so it is not a transformers "
            "model (save one with save_pretrained); for another framework's checkpoint, "
            f"{_PLUGIN_HINT}"
        )
    return None


def _looks_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or os.path.isdir(source)


def _check_local_folder(source: str, option: ModelConfig) -> None:
    """Clear errors for local folders, before transformers gives a hub-flavoured one."""
    if not _looks_local(source):
        return
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {source} does not exist")
    if option.allow_pickle or any(folder.glob("*.safetensors")):
        return
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise ValueError(
            f"{source} has only pickle (.bin) weights, which can run code when read; "
            "pickle weights load only with allow_pickle: true in the option"
        )


__all__ = ["TransformersLoader", "unreadable_reason"]
