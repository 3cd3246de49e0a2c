"""The workers' gRPC APIs, called directly as internal and external clients would."""

from __future__ import annotations

import math
import uuid

import grpc
import httpx
import pytest
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from support.pipeline import wait_for_status

pytestmark = pytest.mark.e2e
FACT = "The Danube flows through ten countries before it reaches the Black Sea."


async def test_embed_service_returns_normalised_384_dim_vectors(system) -> None:
    async with grpc.aio.insecure_channel(system.grpc_address("embed")) as channel:
        stub = services_pb2_grpc.EmbedServiceStub(channel)
        response = await stub.Embed(services_pb2.EmbedRequest(texts=["river", "a Danube fact"], is_query=True))
        assert response.dimensions == 384 and len(response.embeddings) == 2
        assert all(math.isclose(sum(v * v for v in e.values), 1.0, rel_tol=1e-3) for e in response.embeddings)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Embed(services_pb2.EmbedRequest())
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_retrieve_service_search_finds_an_indexed_chunk(system, gateway: httpx.AsyncClient) -> None:
    document_id = f"danube-{uuid.uuid4().hex[:6]}"
    await gateway.post("/v1/documents", json={"id": document_id, "title": "Danube", "text": FACT})
    await wait_for_status(gateway, document_id, {"indexed"})
    async with grpc.aio.insecure_channel(system.grpc_address("retrieve")) as channel:
        stub = services_pb2_grpc.RetrieveServiceStub(channel)
        for mode in (
            queries_pb2.RETRIEVAL_MODE_HYBRID,
            queries_pb2.RETRIEVAL_MODE_DENSE,
            queries_pb2.RETRIEVAL_MODE_LEXICAL,
        ):
            response = await stub.Search(
                services_pb2.SearchRequest(
                    tenant_id="default", query="How many countries does the Danube cross?", top_k=5, retrieval=mode
                )
            )
            assert response.chunks[0].document_id == document_id, mode
            assert response.chunks[0].text == FACT


async def test_generate_service_streams_an_answer(system) -> None:
    source = queries_pb2.ScoredChunk(chunk_id="c1", document_id="d1", title="Danube", text=FACT, score=0.9)
    async with grpc.aio.insecure_channel(system.grpc_address("generate")) as channel:
        stub = services_pb2_grpc.GenerateServiceStub(channel)
        events = [
            e
            async for e in stub.Generate(
                services_pb2.GenerateRequest(
                    tenant_id="default", question="How many countries does the Danube flow through?", sources=[source]
                )
            )
        ]
    tokens = [e.token for e in events if e.WhichOneof("event") == "token"]
    done = events[-1].done
    assert tokens and "".join(tokens) == done.answer
    assert done.citations[0].chunk_id == "c1" and done.citations[0].snippet in FACT
