"""Usage metering through the running system (issue 13's acceptance): a tenant's questions and uploads reach
GET /v1/usage with exact counts within a minute, and its cost is priced from them.

Usage travels gateway/embed/generate -> rag.usage.recorded.v1 -> the metering service (faust windows) ->
usage_minutes -> the gateway. A fresh tenant keeps the counts its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from ragstream_devstack.system import LocalServices
from support.pipeline import wait_for_status

pytestmark = pytest.mark.e2e
ADMIN = {"Authorization": "Bearer admin-token-for-e2e-tests-32-chars-min"}
QUESTIONS, DOCUMENTS = 10, 3
TEXT = "The Svalbard Global Seed Vault stores duplicate seed samples from gene banks around the world, {n}."


@pytest.fixture
async def tenant_client(system: LocalServices) -> AsyncIterator[httpx.AsyncClient]:
    tenant = f"usage-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=60) as client:
        created = await client.post("/v1/admin/tenants", json={"tenant_id": tenant, "name": tenant}, headers=ADMIN)
        assert created.status_code in (200, 201), created.text
        key = await client.post(f"/v1/admin/tenants/{tenant}/api-keys", json={"name": "e2e"}, headers=ADMIN)
        assert key.status_code in (200, 201), key.text
        client.headers["Authorization"] = f"Bearer {key.json()['api_key']}"
        yield client


async def usage_totals(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/usage", params={"granularity": "minute"})
    assert response.status_code == 200, response.text
    return dict(response.json()["totals"])


async def test_questions_and_documents_are_metered_exactly(tenant_client: httpx.AsyncClient) -> None:
    sizes = []
    for n in range(DOCUMENTS):
        text = TEXT.format(n=n)
        sizes.append(len(text.encode()))
        response = await tenant_client.post("/v1/documents", json={"id": f"seed-{n}", "title": "Seeds", "text": text})
        assert response.status_code == 202, response.text
    for n in range(DOCUMENTS):
        await wait_for_status(tenant_client, f"seed-{n}", {"indexed"})
    for _ in range(QUESTIONS):
        answer = await tenant_client.post("/v1/query", json={"question": "What does the Svalbard vault store?"})
        assert answer.status_code == 200, answer.text

    expected = {"questions": QUESTIONS, "documents_ingested": DOCUMENTS, "bytes_ingested": sum(sizes)}
    deadline, totals = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        totals = await usage_totals(tenant_client)
        if all(totals.get(metric) == value for metric, value in expected.items()):
            break
        await asyncio.sleep(1)
    assert {metric: totals.get(metric) for metric in expected} == expected
    assert totals["chunks_embedded"] >= DOCUMENTS and totals["tokens_out"] > 0

    cost = await tenant_client.get("/v1/usage/cost")
    assert cost.status_code == 200, cost.text
    assert float(cost.json()["total"]) > 0
    await asyncio.sleep(6)  # two more flushes: counts stay exact (idempotent totals)
    again = await usage_totals(tenant_client)
    assert {metric: again.get(metric) for metric in expected} == expected
