"""The endpoint's spans and metrics (OpenTelemetry API only; the entry point sets up an SDK).

Spans follow OpenTelemetry's HTTP server conventions (``http.request.method``, ``http.route``,
``http.response.status_code``, …); request duration is the conventional
``http.server.request.duration``. Nothing a client sent or got (prompts, outputs, headers) is
ever an attribute.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from opentelemetry import metrics, trace

SCOPE = "vramdeck.serving"

ATTR_METHOD = "http.request.method"
ATTR_ROUTE = "http.route"
ATTR_STATUS = "http.response.status_code"
ATTR_PATH = "url.path"
ATTR_SCHEME = "url.scheme"
ATTR_SERVER_ADDRESS = "server.address"
ATTR_SERVER_PORT = "server.port"
ATTR_CLIENT_ADDRESS = "client.address"
ATTR_ERROR_TYPE = "error.type"
ATTR_TASK = "vramdeck.task"
ATTR_OPTION = "vramdeck.option"
ATTR_PROMPT_TOKENS = "vramdeck.prompt_tokens"
ATTR_COMPLETION_TOKENS = "vramdeck.completion_tokens"
ATTR_QUEUE_WAIT = "vramdeck.queue_wait_s"

METRIC_REQUEST_DURATION = "http.server.request.duration"
METRIC_TIME_TO_FIRST_TOKEN = "vramdeck.serve.time_to_first_token"
METRIC_TOKENS_PER_SECOND = "vramdeck.serve.tokens_per_second"
METRIC_QUEUE_WAIT = "vramdeck.serve.queue_wait"


def tracer() -> trace.Tracer:
    return trace.get_tracer(SCOPE)


@dataclass(frozen=True)
class Instruments:
    request_duration: metrics.Histogram
    time_to_first_token: metrics.Histogram
    tokens_per_second: metrics.Histogram
    queue_wait: metrics.Histogram


@functools.cache
def instruments() -> Instruments:
    meter = metrics.get_meter(SCOPE)
    return Instruments(
        request_duration=meter.create_histogram(
            METRIC_REQUEST_DURATION, unit="s", description="Duration of HTTP server requests"
        ),
        time_to_first_token=meter.create_histogram(
            METRIC_TIME_TO_FIRST_TOKEN, unit="s", description="From request to the first token"
        ),
        tokens_per_second=meter.create_histogram(
            METRIC_TOKENS_PER_SECOND,
            unit="{token}/s",
            description="Generated tokens per second of generation",
        ),
        queue_wait=meter.create_histogram(
            METRIC_QUEUE_WAIT, unit="s", description="Time a request waited for its model"
        ),
    )


__all__ = [name for name in dir() if name.isupper()] + ["Instruments", "instruments", "tracer"]
