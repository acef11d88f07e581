"""The manager's tracer and meter, and every span and metric name in one place.

Only the OpenTelemetry API is used here; an application configures an SDK (the app does, from the
standard OTEL_* variables), otherwise spans and metrics are no-ops.
"""

from __future__ import annotations

from opentelemetry import metrics, trace

SCOPE = "vramdeck.manager"

SPAN_LOAD = "load_model"
SPAN_UNLOAD = "unload_model"
SPAN_EVICT = "evict_lru_model"

ATTR_TASK = "vramdeck.task"
ATTR_MODEL_ID = "vramdeck.model_id"
ATTR_OPTION = "vramdeck.option"
ATTR_DEVICE = "vramdeck.device"
ATTR_BYTES = "vramdeck.bytes"
ATTR_REQUIRED = "vramdeck.required_bytes"
ATTR_OUTCOME = "vramdeck.outcome"
ATTR_REASON = "vramdeck.reason"

METRIC_LOAD_DURATION = "vramdeck.load.duration"
METRIC_EVICTIONS = "vramdeck.evictions"
METRIC_MEMORY_IN_USE = "vramdeck.memory.in_use"


def tracer() -> trace.Tracer:
    return trace.get_tracer(SCOPE)


def meter() -> metrics.Meter:
    return metrics.get_meter(SCOPE)


__all__ = [name for name in dir() if name.isupper()] + ["meter", "tracer"]
