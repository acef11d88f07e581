"""External APIs (no memory, keys never shown) and the OpenTelemetry spans and metrics."""

from __future__ import annotations

import pytest

from vramdeck.manager import Event, ExternalAPIConfig, ModelLoadError
from vramdeck.manager.config import GIB

SECRET = "sk-test-0123456789-very-secret"

CONFIG = """
models:
  summarize:
    selected: claude
    options:
      claude:
        model_id: claude-sonnet
        framework: external_api
        provider: anthropic
        requires_api_key: true
      local: {model_id: local-llm, vram_gb: 6}
  detect: {options: {yolo: {model_id: yolo, vram_gb: 6}}}
"""


async def test_external_model_takes_no_memory_and_masks_its_key(make_manager, monkeypatch, caplog):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    m, probe, _ = make_manager(CONFIG)
    seen: list[Event] = []
    m.events.subscribe(seen.append)
    client = await m.load_model("summarize")
    assert isinstance(client, ExternalAPIConfig)
    assert client.has_key and client.api_key == SECRET
    assert client.endpoint == "https://api.anthropic.com/v1"
    assert m.is_external_api("summarize") and not m.is_external_api("detect")
    assert m.get_loaded_models()["summarize"]["memory_usage_gb"] == 0
    assert probe.used["cuda:0"] == 0
    await m.load_model("detect")  # 6 GiB fits: the API model counted nothing
    everything = " ".join([repr(client), str(client), repr(m), *map(repr, seen), caplog.text])
    assert SECRET not in everything
    assert "set (masked)" in repr(client)
    assert m.get_external_api_config("summarize").model_id == "claude-sonnet"
    with pytest.raises(ValueError, match="does not use external API"):
        m.get_external_api_config("detect")


async def test_missing_key_names_the_variable(make_manager, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    m, _, _ = make_manager(CONFIG)
    with pytest.raises(ModelLoadError, match="set the environment variable ANTHROPIC_API_KEY"):
        await m.load_model("summarize")
    assert m.task_state("summarize") == "failed"


async def test_spans_carry_task_model_bytes_and_outcome(make_manager, otel, monkeypatch):
    exporter, _ = otel
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    m, _, _ = make_manager(CONFIG.replace("selected: claude", "selected: local"))
    await m.load_model("summarize")
    await m.load_model("detect")  # 6 + 6 > 9: evicts summarize
    await m.unload_model("detect")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"load_model", "evict_lru_model", "unload_model"}
    evict = spans["evict_lru_model"].attributes
    assert evict["vramdeck.task"] == "summarize" and evict["vramdeck.bytes"] == 6 * GIB
    assert evict["vramdeck.reason"].startswith("room for detect: idle ")
    load = [s for s in exporter.get_finished_spans() if s.name == "load_model"][-1].attributes
    assert load["vramdeck.model_id"] == "yolo" and load["vramdeck.outcome"] == "loaded"
    assert load["vramdeck.bytes"] == 6 * GIB and load["vramdeck.device"] == "cuda:0"
    for span in exporter.get_finished_spans():
        assert SECRET not in repr(dict(span.attributes or {}))


async def test_failed_load_span_has_error_status(make_manager, otel):
    exporter, _ = otel
    m, _, _ = make_manager(
        CONFIG.replace("selected: claude", "selected: local"), fail={"local-llm"}
    )
    with pytest.raises(ModelLoadError):
        await m.load_model("summarize")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["vramdeck.outcome"] == "failed"
    assert "cannot load local-llm" in span.attributes["vramdeck.reason"]


async def test_metrics_count_loads_evictions_and_memory(make_manager, otel):
    _, reader = otel
    m, _, _ = make_manager(CONFIG.replace("selected: claude", "selected: local"))
    await m.load_model("summarize")
    await m.load_model("detect")
    m.start_monitor(0.01)
    import asyncio

    await asyncio.sleep(0.05)
    await m.shutdown()
    points: dict[str, list] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    assert sum(p.count for p in points["vramdeck.load.duration"]) >= 2
    assert sum(p.value for p in points["vramdeck.evictions"]) >= 1
    held = [p for p in points["vramdeck.memory.in_use"] if p.attributes["holder"] == "vramdeck"]
    assert any(p.attributes["device"] == "cuda:0" for p in held)
