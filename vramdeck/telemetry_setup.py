"""OpenTelemetry for the entry points (the panel, `vramdeck serve`), only when the standard
``OTEL_*`` variables ask for it.

The manager uses the OpenTelemetry API only; this sets up the SDK behind it. Exporters follow
``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (``console``, ``otlp``, ``none``); an OTLP
endpoint alone (``OTEL_EXPORTER_OTLP_ENDPOINT``) means ``otlp`` for both. ``otlp`` needs the
``opentelemetry-exporter-otlp`` package; without it a warning says so and nothing is exported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def _wanted(kind: str) -> str | None:
    value = os.environ.get(f"OTEL_{kind}_EXPORTER", "").strip().lower()
    if not value and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = "otlp"
    return None if value in ("", "none") else value.split(",")[0].strip()


def configure_from_env() -> Callable[[], None]:
    """Install tracer and meter providers if the environment asks; returns a flush-and-stop."""
    traces, metrics = _wanted("TRACES"), _wanted("METRICS")
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or not (traces or metrics):
        return lambda: None
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    resource = Resource.create({"service.name": "vramdeck"}).merge(OTELResourceDetector().detect())
    stops: list[Callable[[], Any]] = []
    if traces and (exporter := _span_exporter(traces)) is not None:
        stops.append(_install_tracing(resource, exporter))
    if metrics and (metric_exporter := _metric_exporter(metrics)) is not None:
        stops.append(_install_metrics(resource, metric_exporter))

    def shutdown() -> None:
        for stop in stops:
            try:
                stop()
            except Exception:  # exporting is best effort at exit
                logger.debug("telemetry shutdown failed", exc_info=True)

    return shutdown


def _install_tracing(resource: Any, exporter: Any) -> Callable[[], Any]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider.shutdown


def _install_metrics(resource: Any, exporter: Any) -> Callable[[], Any]:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    provider = MeterProvider(resource=resource,
                             metric_readers=[PeriodicExportingMetricReader(exporter)])  # fmt: skip
    metrics.set_meter_provider(provider)
    return provider.shutdown


def _span_exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            logger.warning(
                "OTEL_TRACES_EXPORTER=otlp needs: pip install opentelemetry-exporter-otlp"
            )
            return None
        return OTLPSpanExporter()
    logger.warning("unknown OTEL_TRACES_EXPORTER %r; expected console, otlp or none", name)
    return None


def _metric_exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        except ImportError:
            logger.warning(
                "OTEL_METRICS_EXPORTER=otlp needs: pip install opentelemetry-exporter-otlp"
            )
            return None
        return OTLPMetricExporter()
    logger.warning("unknown OTEL_METRICS_EXPORTER %r; expected console, otlp or none", name)
    return None


__all__ = ["configure_from_env"]
