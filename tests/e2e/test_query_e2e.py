"""Questions through the running system: gateway -> Kafka -> embed -> retrieve -> generate -> gRPC reply."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from rag.v1 import queries_pb2
from ragstream_common.kafka.access_admin import admin_config
from ragstream_common.kafka_settings import KafkaSettings
from support.kafka_clients import signed_in_as
from support.otlp_receiver import OtlpReceiver
from support.pipeline import wait_for_status
from support.sse import read_sse
from support.tenant_kafka import produce, read_topic, wait_for_records

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


async def test_sse_streams_sources_then_tokens_then_done(gateway: httpx.AsyncClient, corpus: dict) -> None:
    async with gateway.stream(
        "POST",
        "/v1/query",
        json={"question": "Which cones does Kilimanjaro have?"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_sse(response)
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


async def test_a_kafka_caller_gets_its_answer_on_its_own_tenants_answers_topic_only(
    system, gateway: httpx.AsyncClient, kafka_admin: KafkaSettings, corpus: dict
) -> None:
    # The tenant's Kafka access as an operator hands it out (the admin API; the password is shown once).
    admin_headers = {"Authorization": "Bearer admin-token-for-e2e-tests-32-chars-min"}
    async with httpx.AsyncClient(base_url=system.gateway_url, headers=admin_headers) as admin:
        response = await admin.post("/v1/admin/tenants/default/kafka-credentials")
    assert response.status_code == 200, response.text
    kafka = response.json()
    tenant = signed_in_as(kafka_admin, kafka["username"], kafka["password"])
    probe = f"{kafka['group_prefix']}probe"

    # Asked over Kafka, the tenant id left out (the topic says whose it is), a reply_to that must be ignored.
    query_id = f"ext-{uuid.uuid4().hex}"
    question = queries_pb2.QueryRequested(query_id=query_id, question="How high is Uhuru Peak?", reply_to="evil:1")
    await produce(tenant, kafka["topics"]["queries"], query_id, question, str(uuid.uuid4()))
    [record] = await wait_for_records(tenant, kafka["topics"]["answers"], {query_id}, timeout_s=60, group=probe)
    answer = queries_pb2.AnswerProduced.FromString(record.value)
    assert answer.tenant_id == "default" and "5,895" in answer.answer
    assert answer.citations[0].document_id == corpus["volcano"]

    # An HTTP caller's answer is never published: not on the tenant's topic, nor on any other answers topic.
    http = await gateway.post("/v1/query", json={"question": "How high is Uhuru Peak on Kilimanjaro?"})
    assert http.status_code == 200, http.text
    http_id = http.json()["query_id"]
    await asyncio.sleep(2)
    topics = (await asyncio.to_thread(AdminClient(admin_config(kafka_admin)).list_topics, timeout=10)).topics
    for name in (t for t in topics if "answers" in t):
        assert http_id not in {r.key for r in await read_topic(kafka_admin, name)}, name


async def test_other_tenants_never_see_these_documents(other_tenant_gateway: httpx.AsyncClient, corpus: dict) -> None:
    search = await other_tenant_gateway.post("/v1/search", json={"query": "Kilimanjaro Uhuru Peak", "top_k": 20})
    assert search.status_code == 200
    assert not {r["document_id"] for r in search.json()["results"]} & set(corpus.values())
    answer = await other_tenant_gateway.post("/v1/query", json={"question": "How high is Uhuru Peak?"})
    assert answer.json()["citations"] == []
