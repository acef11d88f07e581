"""The manager's tracer and meter, and every span and metric name in one place.

Only the OpenTelemetry API is used here; an application configures an SDK (the app does, from the
standard OTEL_* variables), otherwise spans and metrics are no-ops.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

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


@dataclass(frozen=True)
class Instruments:
    """The manager's metric instruments, created once per process and shared by all managers."""

    load_duration: metrics.Histogram
    evictions: metrics.Counter


MemorySource = Callable[[], Iterable[metrics.Observation]]
# Live managers' memory readings. Weak, so a manager that is gone stops being observed: an
# observable gauge keeps its callback for the life of the process.
_memory_sources: weakref.WeakSet[object] = weakref.WeakSet()


def _observe_memory(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    for source in list(_memory_sources):
        yield from source.memory_observations()  # type: ignore[attr-defined]


@functools.cache
def instruments() -> Instruments:
    meter = metrics.get_meter(SCOPE)
    meter.create_observable_gauge(
        METRIC_MEMORY_IN_USE,
        callbacks=[_observe_memory],
        unit="By",
        description="Device memory in use: by every process, and by vramdeck's models",
    )
    return Instruments(
        load_duration=meter.create_histogram(
            METRIC_LOAD_DURATION, unit="s", description="Time to load a model"
        ),
        evictions=meter.create_counter(
            METRIC_EVICTIONS, unit="{eviction}", description="Models evicted to make room"
        ),
    )


def observe_memory(source: object) -> None:
    """Report `source.memory_observations()` under the memory gauge while `source` lives."""
    _memory_sources.add(source)


@contextlib.contextmanager
def load_span(task: str, option: str, model_id: str) -> Iterator[Span]:
    """The span of one load (named as the seed's traced method)."""
    attrs = {ATTR_TASK: task, ATTR_MODEL_ID: model_id, ATTR_OPTION: option}
    with tracer().start_as_current_span(SPAN_LOAD, attributes=attrs) as span:
        yield span


@contextlib.contextmanager
def removal_span(
    task: str, model_id: str, device: str, nbytes: int, reason: str, *, evicted: bool
) -> Iterator[Span]:
    """The span of one unload or eviction; its outcome is set here."""
    attrs: dict[str, str | int] = {
        ATTR_TASK: task,
        ATTR_MODEL_ID: model_id,
        ATTR_DEVICE: device,
        ATTR_BYTES: nbytes,
        ATTR_REASON: reason,
    }
    name = SPAN_EVICT if evicted else SPAN_UNLOAD
    with tracer().start_as_current_span(name, attributes=attrs) as span:
        yield span
        span.set_attribute(ATTR_OUTCOME, "evicted" if evicted else "unloaded")


def mark_placed(span: Span, device: str, required: int) -> None:
    """Record where a load goes and what room it needs."""
    span.set_attribute(ATTR_DEVICE, device)
    span.set_attribute(ATTR_REQUIRED, required)


def mark_loaded(span: Span, nbytes: int) -> None:
    """Record that a load succeeded, and what it took."""
    span.set_attribute(ATTR_BYTES, nbytes)
    span.set_attribute(ATTR_OUTCOME, "loaded")


def mark_failed(span: Span, reason: str) -> None:
    """Record on `span` that its work failed, and why."""
    span.set_attribute(ATTR_OUTCOME, "failed")
    span.set_attribute(ATTR_REASON, reason)
    span.set_status(Status(StatusCode.ERROR, reason))


__all__ = [name for name in dir() if name.isupper()] + [
    "Instruments",
    "instruments",
    "load_span",
    "mark_failed",
    "mark_loaded",
    "mark_placed",
    "observe_memory",
    "removal_span",
    "tracer",
]
