"""Tenant tokens on every worker RPC, against real gRPC servers in this process (the services' own servicers
and GrpcServer), real Postgres (the retrieve login, row-level security on) and the real embedding model.

Each RPC refuses a call without a token, with an expired one, one signed by an unknown key or under a trusted
key id by another key (UNAUTHENTICATED), one without the scope or addressed to another service, and one whose
tenant differs from the request's tenant_id (PERMISSION_DENIED). Search answers from the token's tenant only;
the ReplyService takes replies only for queries of the token's tenant.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.db import create_pool
from ragstream_common.grpc_auth import Metadata, bearer_metadata
from ragstream_common.grpc_server import GrpcServer, check_health
from ragstream_embed.adapters.grpc_api import EmbedServicer
from ragstream_gateway.query.replies import PendingQueries, ReplyServicer, SourcesEvent
from ragstream_generate.adapters.grpc_api import GenerateServicer
from ragstream_generate.backends.extractive import ExtractiveBackend, ExtractiveConfig
from ragstream_retrieve.adapters.grpc_api import RetrieveServicer
from ragstream_retrieve.adapters.grpc_clients import GrpcQueryEmbedder
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.adapters.pg_search import PostgresSearchIndex
from ragstream_retrieve.lexical import LexicalAnalyzer, lexical_text
from ragstream_retrieve.models import ChunkToIndex, DocumentVersion, SearchTuning
from ragstream_retrieve.wire import TopKLimits
from support.tokens import TokenKit

pytestmark = pytest.mark.integration

KIT = TokenKit()
FACT = "The Danube flows through ten countries before it reaches the Black Sea."
AUDIENCES = ["embed", "retrieve", "generate", "gateway"]
SCOPES = ["embed", "search", "generate", "reply"]
UNAUTHENTICATED, PERMISSION_DENIED, OK = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, None


@dataclass
class Workers:
    addresses: dict[str, str]
    pending: PendingQueries
    tenant_a: str
    tenant_b: str
    channels: dict[str, grpc.aio.Channel]


@pytest.fixture(scope="module")
async def encoder() -> AsyncIterator[Any]:
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.models import EncoderOptions

    loaded = await asyncio.to_thread(Encoder.load, EncoderOptions(batch_size=8))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
async def pool(service_database_urls: dict[str, str]) -> AsyncIterator[AsyncConnectionPool]:
    pool = create_pool(service_database_urls["retrieve"], max_size=4, name="test-grpc-tokens")
    await pool.open(wait=True)
    yield pool
    await pool.close()


async def _serve(stack: AsyncExitStack, name: str, register: Callable[[grpc.aio.Server], None]) -> str:
    server = GrpcServer("127.0.0.1", 0, [name], verifier=KIT.verifier())
    server.add(register)
    await server.start()
    await server.mark_serving()
    stack.push_async_callback(server.stop, 0.5)
    return server.address


async def _index(pool: AsyncConnectionPool, encoder: Any, tenant: str, document_id: str) -> None:
    [vector] = await encoder.encode_documents([FACT])
    chunk = ChunkToIndex(
        chunk_id=f"{document_id}-0",
        position=0,
        text=FACT,
        heading="",
        content_sha256=document_id,
        token_count=len(FACT.split()),
        embedding=vector,
        term_frequencies=LexicalAnalyzer().term_frequencies(lexical_text("Danube", "", FACT)),
    )
    document = DocumentVersion(tenant, document_id, 1, "Danube", {}, "all-MiniLM-L6-v2", "1", [chunk])
    await PostgresChunkIndex(pool).upsert_document(document)


@pytest.fixture(scope="module")
async def workers(encoder: Any, pool: AsyncConnectionPool) -> AsyncIterator[Workers]:
    run = uuid.uuid4().hex[:8]
    tenant_a, tenant_b = f"a-{run}", f"b-{run}"
    for tenant in (tenant_a, tenant_b):
        await _index(pool, encoder, tenant, f"danube-{tenant}")
    pending = PendingQueries()
    async with AsyncExitStack() as stack:
        embed = await _serve(
            stack,
            "rag.v1.EmbedService",
            partial(services_pb2_grpc.add_EmbedServiceServicer_to_server, EmbedServicer(encoder)),
        )
        embedder = GrpcQueryEmbedder(embed, KIT.minter("retrieve"))
        stack.push_async_callback(embedder.close)
        search = RetrieveServicer(
            PostgresSearchIndex(pool), LexicalAnalyzer(), embedder, SearchTuning(), TopKLimits(), 384
        )
        backend = ExtractiveBackend(ExtractiveConfig(max_sentences=2))
        addresses = {
            "embed": embed,
            "retrieve": await _serve(
                stack,
                "rag.v1.RetrieveService",
                partial(services_pb2_grpc.add_RetrieveServiceServicer_to_server, search),
            ),
            "generate": await _serve(
                stack,
                "rag.v1.GenerateService",
                partial(services_pb2_grpc.add_GenerateServiceServicer_to_server, GenerateServicer(backend)),
            ),
            "gateway": await _serve(
                stack,
                "rag.v1.ReplyService",
                partial(services_pb2_grpc.add_ReplyServiceServicer_to_server, ReplyServicer(pending)),
            ),
        }
        channels = {name: grpc.aio.insecure_channel(address) for name, address in addresses.items()}
        for channel in channels.values():
            stack.push_async_callback(channel.close)
        yield Workers(addresses, pending, tenant_a, tenant_b, channels)


# One call per RPC family: (the audience and scope it needs, how to make the call with some metadata).
Call = Callable[[Workers, Metadata, str], Awaitable[object]]


async def _embed(workers: Workers, metadata: Metadata, tenant_id: str) -> object:
    stub = services_pb2_grpc.EmbedServiceStub(workers.channels["embed"])
    return await stub.Embed(services_pb2.EmbedRequest(texts=["a river"], is_query=True), metadata=metadata)


async def _search(workers: Workers, metadata: Metadata, tenant_id: str) -> services_pb2.SearchResponse:
    stub = services_pb2_grpc.RetrieveServiceStub(workers.channels["retrieve"])
    request = services_pb2.SearchRequest(tenant_id=tenant_id, query="Danube countries", top_k=10)
    response: services_pb2.SearchResponse = await stub.Search(request, metadata=metadata)
    return response


async def _generate(workers: Workers, metadata: Metadata, tenant_id: str) -> list[services_pb2.GenerateEvent]:
    stub = services_pb2_grpc.GenerateServiceStub(workers.channels["generate"])
    source = queries_pb2.ScoredChunk(chunk_id="c1", document_id="d1", title="Danube", text=FACT, score=0.9)
    request = services_pb2.GenerateRequest(tenant_id=tenant_id, question="Where does the Danube go?", sources=[source])
    return [event async for event in stub.Generate(request, metadata=metadata)]


async def _reply(workers: Workers, metadata: Metadata, tenant_id: str) -> object:
    """DeliverSources for an open query of `tenant_id` (tenant A's when empty)."""
    query_id = uuid.uuid4().hex
    workers.pending.open(query_id, tenant_id or workers.tenant_a)
    stub = services_pb2_grpc.ReplyServiceStub(workers.channels["gateway"])
    try:
        return await stub.DeliverSources(services_pb2.SourcesReply(query_id=query_id), metadata=metadata)
    finally:
        workers.pending.close(query_id)


RPCS: dict[str, tuple[str, str, Call]] = {
    "embed": ("embed", "embed", _embed),
    "search": ("retrieve", "search", _search),
    "generate": ("generate", "generate", _generate),
    "reply": ("gateway", "reply", _reply),
}


def _bearer(token: str) -> Metadata:
    return bearer_metadata(token)


CASES: dict[str, tuple[Callable[[Workers, str, str], Metadata], grpc.StatusCode | None]] = {
    "valid": (lambda w, aud, scope: _bearer(KIT.forged(tenant=w.tenant_a, aud=[aud], scopes=[scope])), OK),
    "no-token": (lambda w, aud, scope: (), UNAUTHENTICATED),
    "not-bearer": (lambda w, aud, scope: (("authorization", "Basic dXNlcjpwYXNz"),), UNAUTHENTICATED),
    "garbage": (lambda w, aud, scope: _bearer("not.a.token"), UNAUTHENTICATED),
    "expired": (lambda w, aud, scope: _bearer(KIT.expired(tenant=w.tenant_a)), UNAUTHENTICATED),
    "unknown-key": (lambda w, aud, scope: _bearer(KIT.unknown_key(tenant=w.tenant_a)), UNAUTHENTICATED),
    "bad-signature": (lambda w, aud, scope: _bearer(KIT.bad_signature(tenant=w.tenant_a)), UNAUTHENTICATED),
    "wrong-scope": (
        lambda w, aud, scope: _bearer(KIT.forged(tenant=w.tenant_a, scopes=[s for s in SCOPES if s != scope])),
        PERMISSION_DENIED,
    ),
    "wrong-audience": (
        lambda w, aud, scope: _bearer(KIT.forged(tenant=w.tenant_a, aud=[a for a in AUDIENCES if a != aud])),
        PERMISSION_DENIED,
    ),
}


async def _status(call: Awaitable[object]) -> grpc.StatusCode | None:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return None


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("rpc", list(RPCS))
async def test_every_worker_rpc_checks_its_token(workers: Workers, rpc: str, case: str) -> None:
    audience, scope, call = RPCS[rpc]
    metadata_for, expected = CASES[case]
    assert await _status(call(workers, metadata_for(workers, audience, scope), "")) == expected


@pytest.mark.parametrize("rpc", ["search", "generate", "reply"])
async def test_tenant_a_cannot_ask_for_tenant_b(workers: Workers, rpc: str) -> None:
    audience, scope, call = RPCS[rpc]
    token_of_a = _bearer(KIT.forged(tenant=workers.tenant_a, aud=[audience], scopes=[scope]))
    assert await _status(call(workers, token_of_a, workers.tenant_b)) == PERMISSION_DENIED
    assert await _status(call(workers, token_of_a, workers.tenant_a)) is None


async def test_search_answers_from_the_tokens_tenant_only(workers: Workers) -> None:
    for tenant in (workers.tenant_a, workers.tenant_b):
        # A gateway-minted token, as POST /v1/auth/token returns; hybrid search embeds through embed (an onward
        # token minted by retrieve for the same tenant).
        metadata = KIT.metadata(tenant, ["search"], ["retrieve"])
        response = await _search(workers, metadata, "")
        assert [chunk.document_id for chunk in response.chunks] == [f"danube-{tenant}"]
        assert "embed" in response.timings_ms


async def test_health_stays_open(workers: Workers) -> None:
    for name, address in workers.addresses.items():
        assert await check_health(address) == "SERVING", name


async def test_the_reply_service_takes_replies_for_its_tenants_queries_only(workers: Workers) -> None:
    stub = services_pb2_grpc.ReplyServiceStub(workers.channels["gateway"])
    query_of_b = uuid.uuid4().hex
    queue = workers.pending.open(query_of_b, workers.tenant_b)
    as_a = bearer_metadata(KIT.minter("retrieve").mint(workers.tenant_a, ["reply"], "gateway"))
    as_b = bearer_metadata(KIT.minter("generate").mint(workers.tenant_b, ["reply"], "gateway"))
    refusals = []
    for query_id in (query_of_b, uuid.uuid4().hex):  # another tenant's query, and no query at all
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.DeliverSources(services_pb2.SourcesReply(query_id=query_id), metadata=as_a)
        refusals.append((refused.value.code(), refused.value.details()))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.DeliverFailure(services_pb2.QueryFailure(query_id=query_id, stage="x"), metadata=as_a)
        refusals.append((refused.value.code(), refused.value.details()))

        async def fragments(query_id: str = query_id) -> AsyncIterator[services_pb2.AnswerFragment]:
            yield services_pb2.AnswerFragment(query_id=query_id, token="stolen")

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.StreamAnswer(fragments(), metadata=as_a)
        refusals.append((refused.value.code(), refused.value.details()))
    # The same answer whether the query exists for another tenant or not at all: nothing to probe.
    assert len(set(refusals)) == 1 and refusals[0][0] == PERMISSION_DENIED
    assert queue.empty()
    ack = await stub.DeliverSources(services_pb2.SourcesReply(query_id=query_of_b), metadata=as_b)
    assert ack.accepted and isinstance(queue.get_nowait(), SourcesEvent)
    workers.pending.close(query_of_b)
    # A late reply of the right tenant is told the query is over, not refused.
    late = await stub.DeliverSources(services_pb2.SourcesReply(query_id=query_of_b), metadata=as_b)
    assert not late.accepted
