"""The one-off work of a first model load, done at start-up in a background thread instead.

A first load ran ~150 ms of Python under the GIL that no later load runs: the imports of the
model's architecture (transformers' generation code, masking, layers, tokenizers: 61 modules for
GPT-2) and transformers' checkpoint-conversion table (built once per process, mostly
``re.compile``). Meanwhile the GUI thread queued for the GIL about 960 times, and the loop
stalled ~40 ms at p99. Done here, while the person looks at the window, the first load's Python
is a warm load's (20 ms instead of 150 ms for a tiny GPT-2). The rest, transformers' pattern per
checkpoint key (~60 ms of ``re.compile`` for the demo's GPT-2), is done by a load of each model
onto the meta device, which reads and holds no weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable

from .formatting import expand_vars
from .records import TaskRow

logger = logging.getLogger(__name__)

#: Frameworks whose loads run transformers' code in this process.
TRANSFORMERS_FRAMEWORKS = ("transformers",)


def import_frameworks() -> None:
    """torch and the transformers names every load needs (transformers imports lazily, on the
    first use of a name; PreTrainedModel alone is 2.7 s of imports)."""
    import torch  # noqa: F401
    import transformers

    transformers.AutoConfig  # noqa: B018
    transformers.AutoModel  # noqa: B018
    transformers.PreTrainedModel  # noqa: B018


def model_sources(rows: Iterable[TaskRow]) -> list[str]:
    """Where the transformers options that can load here read their config from, each once."""
    found = (expand_vars(o.model_id) for r in rows for o in r.options
             if o.framework in TRANSFORMERS_FRAMEWORKS and o.available)  # fmt: skip
    return list(dict.fromkeys(os.path.expanduser(s) for s in found))


def import_architectures(sources: Iterable[str]) -> list[str]:
    """Import each source's model classes and build the conversion table its loads use; the
    model types done. A source whose config is not on this machine (a hub id not in the cache)
    or needs remote code is left to its load: nothing is fetched or run here. Weight
    initialisation is off in the whole process meanwhile: call it while nothing else builds a
    model (the panel runs it before loads may start, the demo models made)."""
    import transformers

    done: list[str] = []
    for source in sources:
        try:
            config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:  # not cached, not a model folder, remote code
            logger.debug("not preloading %s: %s", source, exc)
            continue
        # getattr imports each architecture's modeling module.
        architectures = getattr(config, "architectures", None) or ()
        classes = [getattr(transformers, a, None) for a in architectures]
        _build_conversion_table(config.model_type)
        model_class = next((c for c in classes if c is not None), None)
        if model_class is not None and getattr(config, "quantization_config", None) is None:
            _load_on_meta(model_class, source, config)
        done.append(config.model_type)
    return done


def _load_on_meta(model_class: type, source: str, config: object) -> None:
    """A whole `from_pretrained` onto the meta device: no weight is read or held, but what a
    first load does once per checkpoint is done (transformers compiles a pattern per key it
    renames, ~1 ms each, and Python's `re` keeps them for the next load), so the first real load
    costs what a warm one does."""
    try:
        # No weight is initialised either (on the meta device there is nothing to set): safe
        # for the whole process, since loads wait for the preload (`set_prerequisite`).
        with _no_init_weights():
            model_class.from_pretrained(  # type: ignore[attr-defined]
                source, config=config, device_map="meta", local_files_only=True,
                use_safetensors=True,  # never unpickles: pickle weights only when a config opts in
            )  # fmt: skip
    except (OSError, ValueError, RuntimeError, TypeError) as exc:  # the load will say why
        logger.debug("not preloading %s on meta: %s", source, exc)


def _no_init_weights() -> contextlib.AbstractContextManager[object]:
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # another transformers: initialise, slower but the same
        return contextlib.nullcontext()
    return no_init_weights()


def _build_conversion_table(model_type: str) -> None:
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # a transformers without the table: nothing to build
        return
    get_checkpoint_conversion_mapping(model_type)


__all__ = ["import_architectures", "import_frameworks", "model_sources"]
