"""Where the loaders' garbage collections run (manager/collection.py)."""

from __future__ import annotations

import gc
import threading

from vramdeck.manager import collection


def test_a_collection_runs_here_by_default_and_where_the_app_routes_it() -> None:
    seen: list[str] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(threading.current_thread().name)

    routed: list[str] = []
    previous = collection._collect
    gc.callbacks.append(callback)
    try:
        collection.collect_with(None)
        worker = threading.Thread(target=collection.collect_garbage, name="worker")
        worker.start()
        worker.join(10)
        assert seen == ["worker"]  # no app routed it: in the calling thread
        collection.collect_with(lambda: routed.append(threading.current_thread().name))
        seen.clear()
        collection.collect_garbage()
        assert routed == ["MainThread"] and seen == []  # the app's function, not a collection
    finally:
        gc.callbacks.remove(callback)
        collection.collect_with(previous)
