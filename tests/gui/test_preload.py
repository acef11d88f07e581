"""The first load's one-off work done at start-up: the frameworks, each configured
architecture's code and the conversion table; collection paused meanwhile; the chart first."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

from tests.gui.helpers import until
from vramdeck.gui.gc_guard import GuiThreadCollector, collection_paused
from vramdeck.gui.preload import import_architectures, model_sources
from vramdeck.gui.records import OptionInfo, TaskRow


def test_sources_are_the_transformers_options_that_can_load(monkeypatch) -> None:
    monkeypatch.setenv("VRAMDECK_DEMO_MODELS", "/cache/demo")
    options = (
        OptionInfo("a", "${VRAMDECK_DEMO_MODELS}/gpt2", "transformers", 0.1, "fast", "auto"),
        OptionInfo("b", "org/served", "vllm", 1, "fast", "auto"),
        OptionInfo("c", "org/x", "transformers", 1, "fast", "auto", unavailable_reason="no"),
    )
    rows = [TaskRow("t", "", options, "a", "unloaded"), TaskRow("u", "", options, "b", "x")]
    assert model_sources(rows) == ["/cache/demo/gpt2"]


def test_architectures_are_imported_and_missing_sources_skipped(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    done = import_architectures([str(tmp_path / "missing"), str(tiny_models["tiny-a"])])
    assert done == ["gpt2"]
    assert "transformers.models.gpt2.modeling_gpt2" in sys.modules
    import transformers.conversion_mapping as mapping

    assert mapping._checkpoint_conversion_mapping_cache is not None  # built once, here


def test_no_collection_runs_while_paused(qtbot) -> None:
    collector = GuiThreadCollector(interval_ms=5)
    collected: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    gc.callbacks.append(callback)
    try:
        collector.start()
        with collection_paused():
            assert not gc.isenabled()
            # past the young generation's threshold
            young: list[list[object]] = [[] for _ in range(3000)]
            collector.check()
            assert collected == []
        collector.check()
        assert collected and len(young) == 3000  # resumed: the collector collects again
    finally:
        gc.callbacks.remove(callback)
        collector.stop()
        collector.deleteLater()  # on this thread, not in a later collection elsewhere
    assert gc.isenabled()


def test_the_panel_preloads_before_its_first_load(
    make_panel, gui_config: Path, monkeypatch
) -> None:
    from vramdeck.gui import preload

    panel = make_panel(gui_config, start=False)
    chart_built_at_import: list[bool] = []
    original = preload.import_frameworks

    def import_frameworks() -> None:  # in the preload's thread
        chart_built_at_import.append(panel.window.chart_slot.built)
        original()

    monkeypatch.setattr(preload, "import_frameworks", import_frameworks)
    panel.window.build_chart_soon(delay_ms=300)  # later than the session starts
    panel.run(panel.session.start(sample_interval_s=0.05, warm_up=False, preload=True))

    async def preloaded() -> None:
        assert panel.session.preload is not None
        await until(lambda: panel.session.preload.done(), "the frameworks were imported")

    panel.run(preloaded(), timeout=60)
    assert chart_built_at_import == [True]  # pyqtgraph first, then torch
    assert panel.run(panel.bridge.load("alpha"), timeout=60)  # waits for the architectures
    assert "transformers.models.gpt2.modeling_gpt2" in sys.modules


def test_after_the_preload_a_first_load_compiles_no_pattern(
    tiny_models: dict[str, Path], monkeypatch
) -> None:
    """The meta-device load did the per-checkpoint-key work (transformers' renaming patterns):
    the first real load compiles none, and so runs a warm load's Python."""
    import re._compiler

    from transformers import AutoModelForCausalLM

    source = str(tiny_models["tiny-b"])
    re.purge()  # as in a fresh process: no pattern compiled yet
    assert import_architectures([source]) == ["gpt2"]
    compiled: list[object] = []
    original = re._compiler.compile

    def compile_counted(pattern: object, *args: object) -> object:
        compiled.append(pattern)
        return original(pattern, *args)

    monkeypatch.setattr(re._compiler, "compile", compile_counted)
    model = AutoModelForCausalLM.from_pretrained(source)
    assert next(model.parameters()).device.type == "cpu"
    assert compiled == []


def test_a_loaders_collection_runs_on_the_gui_thread(make_panel, gui_config: Path) -> None:
    """A failed load's collection (manager/collection.py) from a worker thread is queued to the
    GUI thread, where the panel's garbage Qt objects may be finalized."""
    import threading

    from vramdeck.manager.collection import collect_garbage

    panel = make_panel(gui_config, start=False)  # a bridge routes the collections
    where: list[str] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            where.append(threading.current_thread().name)

    gc.callbacks.append(callback)
    try:
        worker = threading.Thread(target=collect_garbage, name="a-loader-worker")
        worker.start()
        worker.join(10)
        assert "a-loader-worker" not in where  # not collected there

        async def collected() -> None:
            await until(lambda: "MainThread" in where, "the GUI thread collected")

        panel.run(collected())
    finally:
        gc.callbacks.remove(callback)
