"""RED series of a real gRPC server (GrpcServer, as start_grpc builds it) on the exposition a scrape reads:
requests by method and status code (refused calls included) and their duration, a stream counted at its end;
and a real Postgres pool's gauges and transaction durations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial

import grpc
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.db import create_pool, tenant_transaction
from ragstream_common.grpc_server import GrpcServer, check_health
from ragstream_generate.adapters.grpc_api import GenerateServicer
from ragstream_generate.backends.extractive import ExtractiveBackend
from support.tokens import TokenKit

pytestmark = pytest.mark.integration

KIT = TokenKit()
GENERATE = "rag.v1.GenerateService"
FACT = "The Danube flows through ten countries before it reaches the Black Sea."


def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the process's /metrics exposition, by name and labels."""
    text = generate_latest(REGISTRY).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def generate_address() -> AsyncIterator[str]:
    server = GrpcServer("127.0.0.1", 0, [GENERATE], verifier=KIT.verifier())
    servicer = GenerateServicer(ExtractiveBackend())
    server.add(partial(services_pb2_grpc.add_GenerateServiceServicer_to_server, servicer))
    await server.start()
    await server.mark_serving()
    yield server.address
    await server.stop(0.5)


async def test_grpc_methods_report_requests_by_code_and_duration(generate_address: str) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    source = queries_pb2.ScoredChunk(chunk_id="c1", document_id="d1", title="Danube", text=FACT, score=0.9)
    request = services_pb2.GenerateRequest(tenant_id=tenant, question="Where does the Danube flow?", sources=[source])
    method = {"grpc_service": GENERATE, "grpc_method": "Generate"}
    health = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
    before = scraped()

    async with grpc.aio.insecure_channel(generate_address) as channel:
        stub = services_pb2_grpc.GenerateServiceStub(channel)
        metadata = KIT.metadata(tenant, ["generate"], "generate")
        for _ in range(2):
            events = [event async for event in stub.Generate(request, metadata=metadata)]
            assert events[-1].HasField("done")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            _ = [event async for event in stub.Generate(request)]
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        blank = services_pb2.GenerateRequest(tenant_id=tenant, question=" ")
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            _ = [event async for event in stub.Generate(blank, metadata=metadata)]
        assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert await check_health(generate_address, GENERATE) == "SERVING"

    after = scraped()

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("ragstream_grpc_server_requests_total", **method, grpc_code="OK") == 2
    assert grew("ragstream_grpc_server_requests_total", **method, grpc_code="UNAUTHENTICATED") == 1
    assert grew("ragstream_grpc_server_requests_total", **method, grpc_code="INVALID_ARGUMENT") == 1
    assert grew("ragstream_grpc_server_request_seconds_count", **method) == 4
    assert grew("ragstream_grpc_server_request_seconds_sum", **method) > 0
    assert grew("ragstream_grpc_server_requests_total", **health, grpc_code="OK") == 1
    assert grew("ragstream_stage_seconds_count", stage="generate") == 2
    assert grew("ragstream_generate_tokens_total", backend="extractive", direction="out") > 0


async def test_postgres_pool_reports_connections_and_transaction_durations(
    service_database_urls: dict[str, str],
) -> None:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    pool = create_pool(service_database_urls["retrieve"], max_size=3, name=name)
    await pool.open(wait=True)
    try:
        async with tenant_transaction(pool, "metrics-tenant") as connection:
            await connection.execute("SELECT pg_sleep(0.01)")
            during = scraped()
        after = scraped()
    finally:
        await pool.close()
    assert sample(during, "ragstream_db_pool_connections", pool=name, state="in_use") == 1
    assert sample(after, "ragstream_db_pool_connections", pool=name, state="in_use") == 0
    assert sample(after, "ragstream_db_pool_connections", pool=name, state="idle") >= 1
    assert sample(after, "ragstream_db_pool_size", pool=name) == 3
    assert sample(after, "ragstream_db_query_seconds_count", pool=name) == 1
    assert sample(after, "ragstream_db_query_seconds_sum", pool=name) >= 0.01
    assert ("ragstream_db_pool_size", frozenset({("pool", name)})) not in scraped()  # closed: gone
