"""The retrieve service as deployed: its composition root on real Kafka, Postgres and gRPC.

Chunks go in through rag.chunks.embedded.v1 and status events come out; queries come in through
rag.queries.embedded.v1 and are answered over the ReplyService of a waiting "gateway" (a recording gRPC
endpoint here, which checks each reply's tenant token) and on rag.queries.retrieved.v1. RetrieveService.Search,
called with a tenant token, embeds through the real embed service.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import numpy as np
import pytest
from rag.v1 import chunks_pb2, documents_pb2, queries_pb2, services_pb2, services_pb2_grpc, status_pb2
from ragstream_common.kafka import ConsumerOptions, Envelope, EventConsumer, EventPublisher, OutgoingEvent
from ragstream_common.kafka.topics import CHUNKS_EMBEDDED, DOCUMENTS_STATUS, QUERIES_EMBEDDED, QUERIES_RETRIEVED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.messages import document_key, pack_vector
from ragstream_common.reply_targets import ReplyTargetSettings
from ragstream_common.service_tokens import bearer_token
from ragstream_devstack.processes import free_port
from ragstream_retrieve.app import start
from ragstream_retrieve.config import RetrieveSettings
from support.tokens import TokenKit

pytestmark = pytest.mark.integration
DIMS = 384
TEXTS = {
    "cats": "The cat sat on the warm windowsill and purred.",
    "rates": "The central bank raised interest rates to curb inflation.",
}
KIT = TokenKit()


class RecordingReplyService(services_pb2_grpc.ReplyServiceServicer):
    """Where the gateway would wait: records what the retrieve service delivers."""

    def __init__(self) -> None:
        self.sources: dict[str, services_pb2.SourcesReply] = {}
        self.failures: dict[str, services_pb2.QueryFailure] = {}
        # The tenant of each delivery's token (scope reply, audience gateway), by query id.
        self.tenants: dict[str, str] = {}

    def _record_tenant(self, query_id: str, context: Any) -> None:
        authorization = dict(context.invocation_metadata() or ()).get("authorization")
        self.tenants[query_id] = KIT.verifier().verify(bearer_token(authorization), "gateway", "reply").tenant

    async def DeliverSources(self, request: services_pb2.SourcesReply, context: Any) -> services_pb2.ReplyAck:
        self._record_tenant(request.query_id, context)
        self.sources[request.query_id] = request
        return services_pb2.ReplyAck(accepted=True)

    async def DeliverFailure(self, request: services_pb2.QueryFailure, context: Any) -> services_pb2.ReplyAck:
        self._record_tenant(request.query_id, context)
        self.failures[request.query_id] = request
        return services_pb2.ReplyAck(accepted=True)


class TenantSearch:
    """RetrieveService.Search as an external caller of the request's tenant calls it: with the token the
    gateway's POST /v1/auth/token would give it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = services_pb2_grpc.RetrieveServiceStub(channel)

    async def Search(self, request: services_pb2.SearchRequest) -> services_pb2.SearchResponse:
        metadata = KIT.metadata(request.tenant_id or "t", ["search"], ["retrieve"])
        response: services_pb2.SearchResponse = await self._stub.Search(request, metadata=metadata)
        return response


class Collector:
    """Every event seen on some topics, by type."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def __call__(self, batch: Sequence[Envelope[Any]]) -> None:
        self.events.extend(envelope.message for envelope in batch)

    def of(self, kind: type, **fields: Any) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())]

    def retrieved(self, query_id: str) -> list[queries_pb2.QueryRetrieved]:
        return [e for e in self.of(queries_pb2.QueryRetrieved) if e.query.query_id == query_id]


async def eventually(condition: Callable[[], Any], timeout_s: float = 45.0) -> Any:
    """Poll until `condition()` is truthy; return that value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"not met within {timeout_s} s")


@pytest.fixture(scope="module")
async def encoder() -> AsyncIterator[Any]:
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.models import EncoderOptions

    loaded = await asyncio.to_thread(Encoder.load, EncoderOptions(batch_size=8))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
async def stack(
    kafka_topics: str, kafka_admin: KafkaSettings, service_database_urls: dict[str, str], encoder: Any
) -> AsyncIterator[dict[str, Any]]:
    from ragstream_embed.adapters.grpc_api import EmbedServicer

    replies = RecordingReplyService()
    collector = Collector()
    run = uuid.uuid4().hex[:8]
    async with AsyncExitStack() as exits:
        servers = []
        for add, servicer in (
            (services_pb2_grpc.add_ReplyServiceServicer_to_server, replies),
            (services_pb2_grpc.add_EmbedServiceServicer_to_server, EmbedServicer(encoder)),
        ):
            server = grpc.aio.server()
            add(servicer, server)
            servers.append(server.add_insecure_port("127.0.0.1:0"))
            await server.start()
            exits.push_async_callback(server.stop, None)
        settings = RetrieveSettings(
            # Kafka as its super user: the run's own consumer groups, and the test publishes its inputs.
            kafka=kafka_admin,
            DATABASE_URL=service_database_urls["retrieve"],
            grpc_port=free_port("127.0.0.1"),
            metrics_port=0,
            index_group_id=f"test-retrieve-index-{run}",
            query_group_id=f"test-retrieve-query-{run}",
            embed_address=f"127.0.0.1:{servers[1]}",
            db_pool_size=4,
            tokens=KIT.settings("retrieve"),
            reply_targets=ReplyTargetSettings(allowed_targets=["127.0.0.1"]),
        )
        stop = asyncio.Event()
        loops = [asyncio.ensure_future(loop) for loop in await start(settings, exits, stop)]
        publisher = EventPublisher(settings.kafka, source="test/retrieve")
        await publisher.start()
        exits.push_async_callback(publisher.stop)
        options = ConsumerOptions(
            group_id=f"test-retrieve-observer-{run}", topics=(DOCUMENTS_STATUS.name, QUERIES_RETRIEVED.name)
        )
        observer = EventConsumer(settings.kafka, options, collector, publisher)
        await observer.start()
        exits.push_async_callback(observer.stop)
        loops.append(asyncio.ensure_future(observer.run(stop)))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}")
        exits.push_async_callback(channel.close)
        yield {
            "publisher": publisher,
            "collector": collector,
            "replies": replies,
            "encoder": encoder,
            "search": TenantSearch(channel),
            "reply_to": f"127.0.0.1:{servers[0]}",
        }
        stop.set()
        await asyncio.gather(*loops)


def embedded_event(
    tenant: str, document_id: str, version: int, vectors: dict[str, np.ndarray], dims: int = DIMS
) -> Any:
    event = chunks_pb2.ChunksEmbedded(
        tenant_id=tenant,
        document_id=document_id,
        version=version,
        title="Notes",
        model="all-MiniLM-L6-v2",
        dimensions=dims,
    )
    event.metadata["source"] = "test"
    for position, (name, vector) in enumerate(vectors.items()):
        chunk = chunks_pb2.Chunk(
            chunk_id=f"{document_id}-{version}-{name}",
            position=position,
            text=TEXTS[name],
            content_sha256=f"sha-{name}",
        )
        event.chunks.append(chunks_pb2.EmbeddedChunk(chunk=chunk, vector=pack_vector(vector)))
    return event


async def publish(stack: dict[str, Any], topic: str, key: str, message: Any) -> None:
    await stack["publisher"].publish(OutgoingEvent(topic, key, message))


async def index_cats_and_rates(stack: dict[str, Any], tenant: str) -> None:
    vectors = await stack["encoder"].encode_documents(list(TEXTS.values()))
    event = embedded_event(tenant, "notes", 1, dict(zip(TEXTS, vectors, strict=True)))
    await publish(stack, CHUNKS_EMBEDDED.name, document_key(tenant, "notes"), event)
    await eventually(lambda: stack["collector"].of(status_pb2.DocumentIndexed, tenant_id=tenant))


async def test_indexing_failure_and_removal_are_announced(stack: dict[str, Any]) -> None:
    tenant, collector = f"t-{uuid.uuid4().hex[:8]}", stack["collector"]
    await index_cats_and_rates(stack, tenant)
    [indexed] = collector.of(status_pb2.DocumentIndexed, tenant_id=tenant)
    assert (indexed.version, indexed.chunk_count, indexed.model) == (1, 2, "all-MiniLM-L6-v2")
    small = {"cats": np.ones(16, dtype=np.float32)}
    await publish(
        stack, CHUNKS_EMBEDDED.name, document_key(tenant, "notes"), embedded_event(tenant, "notes", 2, small, dims=16)
    )
    [failed] = await eventually(lambda: collector.of(status_pb2.DocumentFailed, tenant_id=tenant))
    assert (failed.version, failed.stage) == (2, "index") and "16 dimensions" in failed.reason
    deleted = documents_pb2.DocumentDeleted(tenant_id=tenant, document_id="notes", version=1)
    await publish(stack, CHUNKS_EMBEDDED.name, document_key(tenant, "notes"), deleted)
    await eventually(lambda: collector.of(status_pb2.DocumentRemoved, tenant_id=tenant))
    response = await stack["search"].Search(
        services_pb2.SearchRequest(tenant_id=tenant, query="cat", retrieval=queries_pb2.RETRIEVAL_MODE_LEXICAL)
    )
    assert list(response.chunks) == []


async def test_search_rpc_embeds_the_query_and_finds_by_meaning(stack: dict[str, Any]) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    await index_cats_and_rates(stack, tenant)
    # No word in common with the cat chunk: only the embedding can find it.
    response = await stack["search"].Search(
        services_pb2.SearchRequest(
            tenant_id=tenant, query="kitten resting", top_k=1, retrieval=queries_pb2.RETRIEVAL_MODE_DENSE
        )
    )
    assert [c.chunk_id for c in response.chunks] == ["notes-1-cats"]
    assert response.chunks[0].metadata["source"] == "test"
    assert set(response.timings_ms) == {"embed", "retrieve"}
    lexical = await stack["search"].Search(
        services_pb2.SearchRequest(tenant_id=tenant, query="inflation", retrieval=queries_pb2.RETRIEVAL_MODE_LEXICAL)
    )
    assert [c.chunk_id for c in lexical.chunks] == ["notes-1-rates"] and lexical.chunks[0].lexical_score > 0
    assert "embed" not in lexical.timings_ms


async def test_search_rpc_rejects_empty_query_and_bad_vectors(stack: dict[str, Any]) -> None:
    for request in (
        services_pb2.SearchRequest(tenant_id="t", query="  "),
        services_pb2.SearchRequest(tenant_id="t", query="x", query_vector=[1.0, 2.0]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stack["search"].Search(request)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def embedded_query(tenant: str, stack: dict[str, Any], mode: int, vector: np.ndarray, reply: bool = True) -> Any:
    query = queries_pb2.QueryRequested(
        query_id=uuid.uuid4().hex,
        tenant_id=tenant,
        question="interest rates",
        top_k=2,
        mode=mode,
        reply_to=stack["reply_to"] if reply else "",
    )
    query.deadline.FromDatetime(datetime.now(UTC) + timedelta(seconds=60))
    query.timings_ms["embed"] = 3.0
    return queries_pb2.QueryEmbedded(query=query, vector=pack_vector(vector), model="all-MiniLM-L6-v2")


async def test_queries_are_answered_to_the_gateway_and_the_generator(stack: dict[str, Any]) -> None:
    tenant, collector, replies = f"t-{uuid.uuid4().hex[:8]}", stack["collector"], stack["replies"]
    await index_cats_and_rates(stack, tenant)
    [vector] = await stack["encoder"].encode_queries(["interest rates"])
    answer = embedded_query(tenant, stack, queries_pb2.QUERY_MODE_ANSWER, vector)
    search_only = embedded_query(tenant, stack, queries_pb2.QUERY_MODE_SEARCH, vector)
    expired = embedded_query(tenant, stack, queries_pb2.QUERY_MODE_ANSWER, vector)
    expired.query.deadline.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
    for message in (search_only, expired, answer):
        await publish(stack, QUERIES_EMBEDDED.name, message.query.query_id, message)

    reply = await eventually(lambda: replies.sources.get(answer.query.query_id))
    assert reply.chunks[0].chunk_id == "notes-1-rates" and reply.chunks[0].dense_score > 0.3
    assert replies.tenants[answer.query.query_id] == tenant  # the reply acted for the query's own tenant
    assert set(reply.timings_ms) == {"embed", "retrieve"}
    [retrieved] = await eventually(lambda: collector.retrieved(answer.query.query_id))
    assert [c.chunk_id for c in retrieved.chunks] == [c.chunk_id for c in reply.chunks]
    assert retrieved.query.timings_ms["retrieve"] > 0
    assert await eventually(lambda: replies.sources.get(search_only.query.query_id))
    await asyncio.sleep(1.0)
    assert collector.retrieved(search_only.query.query_id) == [], "SEARCH mode publishes nothing"
    assert collector.retrieved(expired.query.query_id) == [] and expired.query.query_id not in replies.sources
