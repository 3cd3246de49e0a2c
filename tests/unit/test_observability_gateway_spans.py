"""The gateway's HTTP server span under the production tracing setup: it continues a caller's W3C or Jaeger trace,
is the one span of a request, parents whatever the route publishes, carries the question's id, and its trace id is
the correlation id."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from types import SimpleNamespace

import httpx
import pytest
from gateway_deps import gateway_deps, grant
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once
from ragstream_common import tracing
from ragstream_common.events import Emitted
from ragstream_common.tracing import QUERY_ID_ATTRIBUTE
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.correlation import CORRELATION_HEADER
from ragstream_gateway.query.replies import PendingQueries
from ragstream_gateway.query.service import QueryDispatcher

pytestmark = pytest.mark.unit

KEY = "span-test-key"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


@contextlib.contextmanager
def production_tracing(*processors: SpanProcessor) -> Iterator[None]:
    """ragstream_common.tracing.setup_tracing as a service runs it (provider and propagator); the process's previous
    globals come back afterwards (the SDK lets a provider be set only once, so the test resets that guard)."""
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE, propagate.get_global_textmap()
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    tracing.setup_tracing("gateway", None, processors)
    try:
        yield
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved[0], saved[1]
        propagate.set_global_textmap(saved[2])


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    with production_tracing(SimpleSpanProcessor(exporter)):
        yield exporter


class ContextRecordingSink:
    """An `EventSink` noting the span current while the route emits: what a Kafka publish span would be a child of."""

    def __init__(self) -> None:
        self.parents: list[trace.SpanContext] = []

    async def emit(self, events: Sequence[Emitted]) -> None:
        self.parents.append(trace.get_current_span().get_span_context())


@pytest.fixture
def sink() -> ContextRecordingSink:
    return ContextRecordingSink()


@pytest.fixture
async def client(sink: ContextRecordingSink) -> AsyncIterator[httpx.AsyncClient]:
    deps = gateway_deps(grants={KEY: grant()})
    deps.registry.list.return_value = SimpleNamespace(items=[], next_cursor=None)
    deps.readiness.checks.return_value = {"database": True}
    queries = QueryDispatcher(sink, PendingQueries(), "gateway:50050")
    app = create_app(GatewaySettings(admin_token=None), deps, queries=queries)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers={"X-API-Key": KEY}) as c:
        yield c


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def only_span(exported: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exported.get_finished_spans()  # one span per request: no per-operation spans
    assert span.kind is SpanKind.SERVER
    return span


@pytest.mark.parametrize(
    "incoming",
    [
        {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"},
        {"uber-trace-id": f"{TRACE_ID}:{CALLER_SPAN_ID}:0:1"},  # Jaeger clients and older Envoy configurations
    ],
    ids=["w3c", "jaeger"],
)
async def test_a_request_continues_the_callers_trace_and_answers_its_id(
    exported: InMemorySpanExporter, client: httpx.AsyncClient, incoming: dict[str, str]
) -> None:
    response = await client.get("/v1/documents", headers=incoming)
    assert response.status_code == 200, response.text
    span = only_span(exported)
    assert span.name == "GET /v1/documents"
    assert span.attributes is not None and span.attributes["http.route"] == "/v1/documents"
    assert hex_id(span.context.trace_id, 32) == TRACE_ID
    assert span.parent is not None and hex_id(span.parent.span_id, 16) == CALLER_SPAN_ID
    assert response.headers[CORRELATION_HEADER] == TRACE_ID


async def test_w3c_wins_when_a_caller_sends_both_formats(
    exported: InMemorySpanExporter, client: httpx.AsyncClient
) -> None:
    headers = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01", "uber-trace-id": f"{'9' * 32}:{'8' * 16}:0:1"}
    response = await client.get("/v1/documents", headers=headers)
    assert response.headers[CORRELATION_HEADER] == hex_id(only_span(exported).context.trace_id, 32) == TRACE_ID


async def test_a_request_without_a_trace_starts_one_whose_id_is_the_correlation_id(
    exported: InMemorySpanExporter, client: httpx.AsyncClient
) -> None:
    response = await client.get("/v1/documents")
    span = only_span(exported)
    assert span.parent is None
    assert response.headers[CORRELATION_HEADER] == hex_id(span.context.trace_id, 32)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/ui/"])
async def test_probes_and_the_console_open_no_span(
    exported: InMemorySpanExporter, client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"})
    assert exported.get_finished_spans() == ()
    # Still an id to quote, just not a trace's.
    assert re.fullmatch("[0-9a-f]{32}", response.headers[CORRELATION_HEADER])
    assert response.headers[CORRELATION_HEADER] != TRACE_ID


async def test_a_question_is_published_under_the_server_span_which_names_its_query_id(
    exported: InMemorySpanExporter, client: httpx.AsyncClient, sink: ContextRecordingSink
) -> None:
    headers = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"}
    # No worker answers here: the question times out (504), which names its query_id.
    response = await client.post("/v1/query", json={"question": "Why?", "timeout_ms": 1}, headers=headers)
    assert response.status_code == 504, response.text
    span = only_span(exported)
    assert span.attributes is not None and span.attributes[QUERY_ID_ATTRIBUTE] == response.json()["query_id"]
    # The publish span (and through Kafka every worker's span) is a child of the server span.
    assert [parent.span_id for parent in sink.parents] == [span.context.span_id]
    assert response.headers[CORRELATION_HEADER] == TRACE_ID


async def test_without_an_exporter_the_span_is_not_recorded_but_still_gives_the_id(
    client: httpx.AsyncClient,
) -> None:
    with production_tracing():  # no OTLP endpoint: nothing is recorded (ALWAYS_OFF)
        response = await client.get("/v1/documents", headers={"uber-trace-id": f"{TRACE_ID}:{CALLER_SPAN_ID}:0:1"})
    assert response.headers[CORRELATION_HEADER] == TRACE_ID
