"""Agent mode through the gateway app against real Postgres, Kafka and gRPC: the question goes out on Kafka in
agent mode with its step budget; a stand-in generate worker reads it there and answers on the gateway's real
ReplyService (token-checked, through the workers' own reply client) with each step, the sources of all steps,
the tokens and the answer on one stream. The SSE stream keeps that order; the JSON answer lists the steps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.grpc_server import GrpcServer
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import QUERIES_REQUESTED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.reply_client import GrpcReplyClient
from ragstream_common.reply_targets import ReplyTargets
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.query.replies import PendingQueries, ReplyServicer
from ragstream_gateway.query.service import QueryDispatcher
from support.kafka_clients import client_kwargs
from support.sse import parse_sse
from support.tokens import TokenKit

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
TENANT = f"agent-{RUN}"
KEY = f"agent-key-{RUN}"
KIT = TokenKit()
SSE = {"Accept": "text/event-stream"}

CONES = queries_pb2.ScoredChunk(chunk_id="c1", document_id="kili", text="Kibo is the highest of the cones.", score=0.8)
ERUPTION = queries_pb2.ScoredChunk(chunk_id="c9", document_id="kibo", text="Kibo erupted 150,000 years ago.", score=0.6)
STEPS = [
    queries_pb2.AgentStep(step=1, query="Which cone of Kilimanjaro erupted last?", sources=[CONES], new_sources=1),
    queries_pb2.AgentStep(step=2, query="Kibo eruption", reason="when Kibo erupted", sources=[ERUPTION], new_sources=1),
]
TOKENS = ["Kibo [1] ", "erupted 150,000 years ago [2]."]


class QueryTail:
    """Reads rag.queries.requested.v1 from the offsets it had when opened, as the pipeline's first stage would."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)

    async def __aenter__(self) -> QueryTail:
        await self._consumer.start()
        partitions = [TopicPartition(QUERIES_REQUESTED.name, p) for p in range(QUERIES_REQUESTED.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve now, so records produced from here on are all seen
            await self._consumer.position(partition)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._consumer.stop()

    async def query(self, question: str, timeout_s: float = 15) -> queries_pb2.QueryRequested:
        async with asyncio.timeout(timeout_s):
            while True:
                batches = await self._consumer.getmany(timeout_ms=200)
                for record in (r for batch in batches.values() for r in batch):
                    headers = cloudevents.headers_to_dict(list(record.headers))
                    message, _ = cloudevents.decode(record.value, headers, QUERIES_REQUESTED.event_types)
                    if isinstance(message, queries_pb2.QueryRequested) and message.question == question:
                        return message


@dataclass
class Gateway:
    http: httpx.AsyncClient
    queries: QueryTail
    replies: GrpcReplyClient  # the generate worker's side


@pytest.fixture
async def gateway(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings], kafka_admin: KafkaSettings
) -> AsyncIterator[Gateway]:
    settings = GatewaySettings(
        DATABASE_URL=service_database_urls["gateway"],
        admin_database_url=service_database_urls["gateway-admin"],  # it creates the dev tenant and its key
        kafka=kafka_principals["gateway"],
        dev_tenant=TENANT,
        dev_api_key=KEY,
        admin_token=None,
        db_pool_size=2,
    )
    async with AsyncExitStack() as stack:
        deps = await open_deps(settings, stack)
        pending = PendingQueries()
        server = GrpcServer("127.0.0.1", 0, ["rag.v1.ReplyService"], verifier=KIT.verifier())
        server.add(partial(services_pb2_grpc.add_ReplyServiceServicer_to_server, ReplyServicer(pending)))
        await server.start()
        await server.mark_serving()
        stack.push_async_callback(server.stop, 0.5)
        queries = QueryDispatcher(RoutedEventSink(deps.publisher, GATEWAY_ROUTES), pending, server.address)
        transport = httpx.ASGITransport(app=create_app(settings, deps, queries=queries), client=("127.0.0.1", 40000))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://gateway", headers={"X-API-Key": KEY})
        )
        tail = await stack.enter_async_context(QueryTail(kafka_admin))
        replies = GrpcReplyClient(targets=ReplyTargets(["127.0.0.1"]), tokens=KIT.minter("generate"))
        stack.push_async_callback(replies.close)
        yield Gateway(http, tail, replies)


async def _agent_answer(query_id: str) -> AsyncIterator[services_pb2.AnswerFragment]:
    """What generate streams in agent mode: each step, then every step's sources once, the tokens, the answer."""
    for step in STEPS:
        yield services_pb2.AnswerFragment(query_id=query_id, step=step)
    sources = services_pb2.SourcesReply(query_id=query_id, chunks=[CONES, ERUPTION], timings_ms={"retrieve": 4.0})
    yield services_pb2.AnswerFragment(query_id=query_id, sources=sources)
    for token in TOKENS:
        yield services_pb2.AnswerFragment(query_id=query_id, token=token)
    citations = [
        queries_pb2.Citation(index=1, document_id="kili", chunk_id="c1", snippet="Kibo", score=0.8),
        queries_pb2.Citation(index=2, document_id="kibo", chunk_id="c9", snippet="150,000 years", score=0.6),
    ]
    done = queries_pb2.AnswerProduced(
        query_id=query_id,
        tenant_id=TENANT,
        answer="".join(TOKENS),
        citations=citations,
        backend="extractive",
        steps=STEPS,
        exit_reason="answered",
        timings_ms={"generate": 9.0},
    )
    yield services_pb2.AnswerFragment(query_id=query_id, done=done)


async def _ask_and_answer(gateway: Gateway, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    """POST the question; meanwhile act as the worker: take it from Kafka, answer over the ReplyService."""
    asking = asyncio.create_task(gateway.http.post("/v1/query", json=body, headers=headers))
    try:
        query = await gateway.queries.query(body["question"])
        assert (query.tenant_id, query.mode, query.max_steps) == (TENANT, queries_pb2.QUERY_MODE_AGENT, 3)
        answered = await gateway.replies.stream_answer(
            query.reply_to, query.query_id, _agent_answer(query.query_id), query.tenant_id
        )
        assert answered, "the gateway took the answer stream"
        return await asyncio.wait_for(asking, 15)
    finally:
        asking.cancel()


async def test_the_stream_carries_each_step_then_the_sources_then_tokens_then_done(gateway: Gateway) -> None:
    body = {"question": f"Which cone erupted last? {uuid.uuid4().hex}", "mode": "agent", "max_steps": 3}
    response = await _ask_and_answer(gateway, {**body, "timeout_ms": 20_000}, SSE)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text.splitlines())
    assert [kind for kind, _ in events] == ["step", "step", "sources", "token", "token", "done"]
    assert [(data["step"], data["query"], data["new_sources"]) for _, data in events[:2]] == [
        (1, "Which cone of Kilimanjaro erupted last?", 1),
        (2, "Kibo eruption", 1),
    ]
    assert events[1][1]["sources"] == [{"document_id": "kibo", "chunk_id": "c9", "score": 0.6}]
    assert [r["chunk_id"] for r in events[2][1]["results"]] == ["c1", "c9"]
    done = events[-1][1]
    assert done["answer"] == "".join(data["text"] for kind, data in events if kind == "token")
    assert done["exit_reason"] == "answered" and done["steps"] == [data for _, data in events[:2]]
    assert [c["chunk_id"] for c in done["citations"]] == ["c1", "c9"]


async def test_the_json_answer_lists_the_steps_and_cites_chunks_of_every_step(gateway: Gateway) -> None:
    body = {"question": f"When did Kibo erupt? {uuid.uuid4().hex}", "mode": "agent", "max_steps": 3}
    response = await _ask_and_answer(gateway, {**body, "timeout_ms": 20_000}, {})
    answer = response.json()
    assert response.status_code == 200, answer
    assert answer["answer"] == "".join(TOKENS) and answer["exit_reason"] == "answered"
    assert [(c["index"], c["document_id"]) for c in answer["citations"]] == [(1, "kili"), (2, "kibo")]
    assert [(s["step"], s["reason"], [c["chunk_id"] for c in s["sources"]]) for s in answer["steps"]] == [
        (1, "", ["c1"]),
        (2, "when Kibo erupted", ["c9"]),
    ]
    assert answer["timings"]["generate"] == 9.0 and answer["timings"]["total"] > 0
