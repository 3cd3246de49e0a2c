"""The gateway's HTTP server span: one per `/v1/*` request, continuing the caller's trace.

FastAPI opens it (its native OpenTelemetry support, configured by `TELEMETRY`) once ragstream_common.tracing has
installed the tracer provider and the global propagator, which accepts a W3C `traceparent` and Jaeger's
`uber-trace-id` (Envoy, an ingress or a client). The span is current while the route runs, so:
- the query's Kafka publish span, and through it every worker's span, is its child;
- the correlation id (correlation.py) is its trace id, the id to paste into Jaeger;
- the query dispatcher names the question on it (`rag.query_id`, as retrieve's and generate's spans do).
Without an OTLP endpoint the provider records nothing (ALWAYS_OFF): the span still has ids, at a fraction of the
cost. Only the one span: FastAPI's per-operation spans and its OpenTelemetry metrics and logs stay off (Prometheus
counts requests: observability.py; structlog writes the logs).
"""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig
from starlette.types import Scope

TRACED_PREFIX = "/v1/"


def untraced(scope: Scope) -> bool:
    """Health probes, the console's assets and the API docs open no span: only the API is traced."""
    path: str = scope.get("path", "")
    return not path.startswith(TRACED_PREFIX)


TELEMETRY: TelemetryConfig = {
    "exclude": untraced,
    "operation_spans": False,
    "metrics": False,
    "logs": False,
}
