"""The workers' gRPC APIs, called directly as external clients would: an API key buys a short-lived tenant token
at POST /v1/auth/token, sent as `authorization: Bearer` metadata; without one every call is refused."""

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
Metadata = tuple[tuple[str, str], ...]


async def token_metadata(client: httpx.AsyncClient) -> Metadata:
    response = await client.post("/v1/auth/token")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600
    return (("authorization", f"Bearer {body['access_token']}"),)


async def test_embed_service_returns_normalised_384_dim_vectors(system, gateway: httpx.AsyncClient) -> None:
    metadata = await token_metadata(gateway)
    async with grpc.aio.insecure_channel(system.grpc_address("embed")) as channel:
        stub = services_pb2_grpc.EmbedServiceStub(channel)
        request = services_pb2.EmbedRequest(texts=["river", "a Danube fact"], is_query=True)
        response = await stub.Embed(request, metadata=metadata)
        assert response.dimensions == 384 and len(response.embeddings) == 2
        assert all(math.isclose(sum(v * v for v in e.values), 1.0, rel_tol=1e-3) for e in response.embeddings)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Embed(services_pb2.EmbedRequest(), metadata=metadata)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Embed(request)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_retrieve_service_search_finds_an_indexed_chunk_of_the_tokens_tenant_only(
    system, gateway: httpx.AsyncClient, other_tenant_gateway: httpx.AsyncClient
) -> None:
    document_id = f"danube-{uuid.uuid4().hex[:6]}"
    others = f"others-danube-{uuid.uuid4().hex[:6]}"
    await gateway.post("/v1/documents", json={"id": document_id, "title": "Danube", "text": FACT})
    await other_tenant_gateway.post("/v1/documents", json={"id": others, "title": "Danube", "text": FACT})
    await wait_for_status(gateway, document_id, {"indexed"})
    await wait_for_status(other_tenant_gateway, others, {"indexed"})
    metadata = await token_metadata(gateway)
    question = "How many countries does the Danube cross?"
    async with grpc.aio.insecure_channel(system.grpc_address("retrieve")) as channel:
        stub = services_pb2_grpc.RetrieveServiceStub(channel)
        for mode in (
            queries_pb2.RETRIEVAL_MODE_HYBRID,
            queries_pb2.RETRIEVAL_MODE_DENSE,
            queries_pb2.RETRIEVAL_MODE_LEXICAL,
        ):
            request = services_pb2.SearchRequest(query=question, top_k=20, retrieval=mode)
            response = await stub.Search(request, metadata=metadata)
            assert response.chunks[0].document_id == document_id, mode
            assert response.chunks[0].text == FACT
            assert others not in {chunk.document_id for chunk in response.chunks}, mode
        # The token's tenant, never the request's: naming another tenant is refused, and so is no token.
        for request, call_metadata, code in (
            (
                services_pb2.SearchRequest(tenant_id="other", query=question),
                metadata,
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            (services_pb2.SearchRequest(tenant_id="default", query=question), (), grpc.StatusCode.UNAUTHENTICATED),
            (
                services_pb2.SearchRequest(tenant_id="default", query=question),
                (("authorization", "Bearer dev-key"),),
                grpc.StatusCode.UNAUTHENTICATED,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Search(request, metadata=call_metadata)
            assert error.value.code() == code
        other_metadata = await token_metadata(other_tenant_gateway)
        response = await stub.Search(services_pb2.SearchRequest(query=question, top_k=20), metadata=other_metadata)
        found = {chunk.document_id for chunk in response.chunks}
        assert others in found and document_id not in found


async def test_generate_service_streams_an_answer(system, gateway: httpx.AsyncClient) -> None:
    metadata = await token_metadata(gateway)
    source = queries_pb2.ScoredChunk(chunk_id="c1", document_id="d1", title="Danube", text=FACT, score=0.9)
    request = services_pb2.GenerateRequest(
        question="How many countries does the Danube flow through?", sources=[source]
    )
    async with grpc.aio.insecure_channel(system.grpc_address("generate")) as channel:
        stub = services_pb2_grpc.GenerateServiceStub(channel)
        events = [e async for e in stub.Generate(request, metadata=metadata)]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            _ = [e async for e in stub.Generate(request)]
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    tokens = [e.token for e in events if e.WhichOneof("event") == "token"]
    done = events[-1].done
    assert tokens and "".join(tokens) == done.answer
    assert done.citations[0].chunk_id == "c1" and done.citations[0].snippet in FACT
    assert done.tenant_id == "default"  # the token's tenant
