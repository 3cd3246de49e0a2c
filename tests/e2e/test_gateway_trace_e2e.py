"""A question's trace in the running system, as exported over OTLP: the gateway's HTTP server span continues the
caller's trace, every worker's span descends from it, and it carries the question's id (rag.query_id), so a
query_id or a correlation id finds the whole trace."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from support.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e

CALLER_SPAN_ID = "4" * 16  # the client's (or Envoy's) span: the gateway's server span is its child


async def spans_of(otlp_receiver: OtlpReceiver, trace_id: str, services: set[str]) -> list[ReceivedSpan]:
    """The trace's spans once every service of `services` has exported some (batches leave every 200 ms)."""
    for _ in range(80):
        spans = otlp_receiver.spans(trace_id)
        if services <= {span.service for span in spans}:
            return spans
        await asyncio.sleep(0.25)
    return otlp_receiver.spans(trace_id)


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[str]:
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span.span_id)
    return chain


async def test_the_gateway_server_span_roots_a_questions_trace_and_names_its_query(
    gateway: httpx.AsyncClient, otlp_receiver: OtlpReceiver
) -> None:
    trace_id = uuid.uuid4().hex
    headers = {"traceparent": f"00-{trace_id}-{CALLER_SPAN_ID}-01"}
    response = await gateway.post("/v1/query", json={"question": "What is the tallest mountain?"}, headers=headers)
    assert response.status_code == 200, response.text
    query_id = response.json()["query_id"]
    assert response.headers["X-Correlation-ID"] == trace_id  # what a client quotes finds the trace

    spans = await spans_of(otlp_receiver, trace_id, {"gateway", "embed", "retrieve", "generate"})
    (server,) = [s for s in spans if s.parent_span_id == CALLER_SPAN_ID]
    assert (server.service, server.name) == ("gateway", "POST /v1/query")
    assert server.attributes["rag.query_id"] == query_id
    by_id = {span.span_id: span for span in spans}
    publish = next(s for s in spans if s.name == "rag.queries.requested.v1 publish")
    assert publish.parent_span_id == server.span_id  # one span: no FastAPI operation spans in between
    # Every other span of the trace, in every worker, descends from it.
    for span in spans:
        if span is not server:
            assert server.span_id in ancestors(span, by_id), (span.service, span.name)
    # The workers' spans name the same question.
    tagged = {s.service for s in spans if s.attributes.get("rag.query_id") == query_id}
    assert {"gateway", "retrieve", "generate"} <= tagged


async def test_a_jaeger_header_is_continued_and_the_correlation_id_is_its_trace(
    gateway: httpx.AsyncClient, otlp_receiver: OtlpReceiver
) -> None:
    trace_id = uuid.uuid4().hex
    response = await gateway.get("/v1/documents", headers={"uber-trace-id": f"{trace_id}:{CALLER_SPAN_ID}:0:1"})
    assert response.status_code == 200
    assert response.headers["X-Correlation-ID"] == trace_id
    (server,) = await spans_of(otlp_receiver, trace_id, {"gateway"})
    assert (server.name, server.parent_span_id) == ("GET /v1/documents", CALLER_SPAN_ID)
