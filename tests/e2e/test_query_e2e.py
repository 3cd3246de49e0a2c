"""Questions through the running system: gateway -> Kafka -> embed -> retrieve -> generate -> gRPC reply."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from rag.v1 import queries_pb2
from ragstream_common.kafka import ConsumerOptions, Envelope, EventConsumer, EventPublisher, OutgoingEvent
from ragstream_common.kafka.topics import ANSWERS_PRODUCED, QUERIES_REQUESTED
from ragstream_common.kafka_settings import KafkaSettings
from support.otlp_receiver import OtlpReceiver
from support.pipeline import wait_for_status

pytestmark = pytest.mark.e2e

VOLCANO = (
    "Mount Kilimanjaro is a dormant volcano in Tanzania. Its summit, Uhuru Peak, rises 5,895 metres above sea level. "
    "The mountain has three volcanic cones: Kibo, Mawenzi and Shira."
)
PASTA = (
    "Carbonara is a Roman pasta dish made with eggs, hard cheese, cured pork and black pepper. "
    "Traditional recipes use guanciale rather than pancetta."
)


@pytest.fixture(scope="module")
async def corpus(system) -> AsyncIterator[dict[str, str]]:
    """Two small documents indexed once for this module, with distinct metadata."""
    suffix = uuid.uuid4().hex[:6]
    ids = {"volcano": f"kilimanjaro-{suffix}", "pasta": f"carbonara-{suffix}"}
    async with httpx.AsyncClient(
        base_url=system.gateway_url, headers={"Authorization": "Bearer dev-key"}, timeout=60
    ) as client:
        for name, text in (("volcano", VOLCANO), ("pasta", PASTA)):
            response = await client.post(
                "/v1/documents",
                json={"id": ids[name], "title": name.title(), "text": text, "metadata": {"topic": name}},
            )
            assert response.status_code == 202, response.text
        for document_id in ids.values():
            await wait_for_status(client, document_id, {"indexed"})
    yield ids


async def test_question_is_answered_with_a_verbatim_citation(gateway: httpx.AsyncClient, corpus: dict) -> None:
    response = await gateway.post("/v1/query", json={"question": "How high is Uhuru Peak on Kilimanjaro?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "5,895" in body["answer"]
    assert body["citations"], body
    cited = body["citations"][0]
    assert cited["document_id"] == corpus["volcano"]
    assert cited["snippet"] in VOLCANO
    assert f"[{cited['index']}]" in body["answer"]
    for stage in ("embed", "retrieve", "generate", "total"):
        assert body["timings"][stage] >= 0


async def _sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and name:
            events.append((name, json.loads(line.split(":", 1)[1])))
            name = None
    return events


async def test_sse_streams_sources_then_tokens_then_done(gateway: httpx.AsyncClient, corpus: dict) -> None:
    async with gateway.stream(
        "POST",
        "/v1/query",
        json={"question": "Which cones does Kilimanjaro have?"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await _sse_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert "token" in kinds and set(kinds[1:-1]) == {"token"}
    done = events[-1][1]
    assert "".join(data["text"] for kind, data in events if kind == "token") == done["answer"]
    assert done["citations"] and done["timings"]["total"] > 0
    assert any(source["document_id"] == corpus["volcano"] for source in events[0][1]["results"])


async def test_question_without_matching_sources_says_so(gateway: httpx.AsyncClient, corpus: dict) -> None:
    response = await gateway.post("/v1/query", json={"question": "What is the airspeed of an unladen swallow?"})
    body = response.json()
    assert body["no_answer"] is True
    assert body["citations"] == []
    assert "do not contain" in body["answer"]


async def test_filters_restrict_results(gateway: httpx.AsyncClient, corpus: dict) -> None:
    question = {"query": "volcano pasta", "top_k": 10}
    by_metadata = await gateway.post("/v1/search", json={**question, "filters": {"metadata": {"topic": "pasta"}}})
    assert {r["document_id"] for r in by_metadata.json()["results"]} == {corpus["pasta"]}
    by_id = await gateway.post("/v1/search", json={**question, "filters": {"document_ids": [corpus["volcano"]]}})
    assert {r["document_id"] for r in by_id.json()["results"]} == {corpus["volcano"]}


async def test_deleted_document_is_never_cited(gateway: httpx.AsyncClient, system) -> None:
    document_id = f"glacier-{uuid.uuid4().hex[:6]}"
    text = "The Perito Moreno glacier in Patagonia advances about two metres per day."
    await gateway.post("/v1/documents", json={"id": document_id, "text": text})
    await wait_for_status(gateway, document_id, {"indexed"})
    before = await gateway.post("/v1/query", json={"question": "How fast does the Perito Moreno glacier advance?"})
    assert document_id in {c["document_id"] for c in before.json()["citations"]}
    await gateway.delete(f"/v1/documents/{document_id}")
    for _ in range(100):
        search = await gateway.post("/v1/search", json={"query": "Perito Moreno glacier", "top_k": 20})
        if document_id not in {r["document_id"] for r in search.json()["results"]}:
            break
        await asyncio.sleep(0.2)
    after = await gateway.post("/v1/query", json={"question": "How fast does the Perito Moreno glacier advance?"})
    assert document_id not in {c["document_id"] for c in after.json()["citations"]}


async def test_deadline_returns_504_problem(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/v1/query", json={"question": "Anything at all?", "timeout_ms": 1})
    assert response.status_code == 504
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 504


async def test_one_query_is_one_trace_across_every_service(
    gateway: httpx.AsyncClient, corpus: dict, otlp_receiver: OtlpReceiver
) -> None:
    trace_id = uuid.uuid4().hex
    headers = {"traceparent": f"00-{trace_id}-{'1' * 16}-01"}
    response = await gateway.post("/v1/query", json={"question": "How high is Uhuru Peak?"}, headers=headers)
    assert response.status_code == 200
    wanted = {"gateway", "embed", "retrieve", "generate"}
    for _ in range(60):
        if wanted <= {span.service for span in otlp_receiver.spans(trace_id)}:
            break
        await asyncio.sleep(0.25)
    spans = otlp_receiver.spans(trace_id)
    assert wanted <= {span.service for span in spans}
    # Each hop is a publish span whose consumer's process span is its child, so Jaeger shows the Kafka wait.
    by_id = {span.span_id: span for span in spans}
    for topic, producer, consumer in (
        ("rag.queries.requested.v1", "gateway", "embed"),
        ("rag.queries.embedded.v1", "embed", "retrieve"),
        ("rag.queries.retrieved.v1", "retrieve", "generate"),
    ):
        process = next(s for s in spans if s.name == f"{topic} process" and s.service == consumer)
        publish = by_id[process.parent_span_id]
        assert (publish.name, publish.service) == (f"{topic} publish", producer)


async def test_legacy_jaeger_header_joins_the_trace(gateway: httpx.AsyncClient, otlp_receiver: OtlpReceiver) -> None:
    trace_id = uuid.uuid4().hex
    headers = {"uber-trace-id": f"{trace_id}:{'2' * 16}:0:1"}
    await gateway.get("/v1/documents", headers=headers)
    for _ in range(40):
        if otlp_receiver.spans(trace_id):
            break
        await asyncio.sleep(0.25)
    assert {span.service for span in otlp_receiver.spans(trace_id)} == {"gateway"}


async def test_external_kafka_query_gets_its_answer_on_the_answers_topic(kafka_topics: str, corpus: dict) -> None:
    query_id = f"ext-{uuid.uuid4().hex}"
    question = queries_pb2.QueryRequested(query_id=query_id, tenant_id="default", question="How high is Uhuru Peak?")
    publisher = EventPublisher(KafkaSettings(bootstrap_servers=kafka_topics), source="crm/asker")
    await publisher.start()
    await publisher.publish(OutgoingEvent(QUERIES_REQUESTED.name, query_id, question, content_type="application/json"))
    answers: list[queries_pb2.AnswerProduced] = []

    async def collect(batch: list[Envelope]) -> None:
        answers.extend(e.message for e in batch if e.key == query_id)

    consumer = EventConsumer(
        KafkaSettings(bootstrap_servers=kafka_topics),
        ConsumerOptions(group_id=f"crm-{uuid.uuid4().hex}", topics=(ANSWERS_PRODUCED.name,)),
        collect,
        publisher,
    )
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(60):
            while not answers:
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
        await consumer.stop()
        await publisher.stop()
    assert "5,895" in answers[0].answer
    assert answers[0].citations[0].document_id == corpus["volcano"]


async def test_other_tenants_never_see_these_documents(other_tenant_gateway: httpx.AsyncClient, corpus: dict) -> None:
    search = await other_tenant_gateway.post("/v1/search", json={"query": "Kilimanjaro Uhuru Peak", "top_k": 20})
    assert search.status_code == 200
    assert not {r["document_id"] for r in search.json()["results"]} & set(corpus.values())
    answer = await other_tenant_gateway.post("/v1/query", json={"question": "How high is Uhuru Peak?"})
    assert answer.json()["citations"] == []
