"""The usage and cost API over the real app, Postgres (row-level security included) and Kafka: metered rows as
the metering service writes them (inserted here as the database owner), bucketed by the gateway per minute, hour
and day; tenant isolation; range limits; admin reads and budgets."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest
from pydantic import SecretStr
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.usage import USAGE_METRICS, Budget, UsageService, UsageSettings

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
ADMIN_TOKEN = secrets.token_urlsafe(32)
HOUR = datetime(2026, 1, 10, 9, tzinfo=UTC)
# $1 per 1,000 questions, $0.50 per 1,000 tokens in, everything else free.
PRICES = UsageSettings.model_validate(
    {f"price_{metric}": 0 for metric in USAGE_METRICS} | {"price_questions": "1", "price_tokens_in": "0.5"}
)
Gateway = tuple[GatewaySettings, GatewayDeps]


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings]
) -> AsyncIterator[Gateway]:
    settings = GatewaySettings(
        DATABASE_URL=service_database_urls["gateway"],
        admin_database_url=service_database_urls["gateway-admin"],
        kafka=kafka_principals["gateway"],
        admin_token=SecretStr(ADMIN_TOKEN),
        db_pool_size=2,
        usage=PRICES,
    )
    async with AsyncExitStack() as stack:
        yield settings, await open_deps(settings, stack)


def _client(gateway: Gateway, key: str | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(*gateway))
    headers = {"X-API-Key": key} if key else {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers, timeout=30)


async def _tenant(gateway: Gateway, scopes: list[str] | None = None) -> tuple[str, str]:
    tenant_id = f"use-{RUN}-{uuid.uuid4().hex[:6]}"
    async with _client(gateway) as admin:
        created = await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": "Usage"})
        assert created.status_code == 201, created.text
        body = {"name": "usage"} | ({"scopes": scopes} if scopes else {})
        key = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json=body)
        assert key.status_code == 201, key.text
    return tenant_id, key.json()["api_key"]


async def _meter(owner_url: str, tenant_id: str, window_start: datetime, **values: int) -> None:
    """Rows as services/metering writes them (the owner login bypasses row-level security)."""
    async with await psycopg.AsyncConnection.connect(owner_url, autocommit=True) as connection:
        for metric, value in values.items():
            await connection.execute(
                "INSERT INTO usage_minutes (tenant_id, window_start, metric, value) VALUES (%s, %s, %s, %s)",
                (tenant_id, window_start, metric, value),
            )


def _range(start: datetime, end: datetime, granularity: str) -> dict[str, str]:
    return {"from": start.isoformat(), "to": end.isoformat(), "granularity": granularity}


@pytest.fixture(scope="module")
async def metered(gateway: Gateway, migrated_database: str) -> tuple[str, str]:
    """A tenant with questions in two minutes of one hour and a document in the next hour."""
    tenant_id, key = await _tenant(gateway)
    await _meter(migrated_database, tenant_id, HOUR, questions=3, searches=1, tokens_in=1200, tokens_out=300)
    await _meter(migrated_database, tenant_id, HOUR + timedelta(minutes=7), questions=7, tokens_in=800)
    second = HOUR + timedelta(hours=1, minutes=30)
    await _meter(migrated_database, tenant_id, second, documents_ingested=3, bytes_ingested=4096, chunks_embedded=12)
    return tenant_id, key


async def test_usage_is_bucketed_per_minute_hour_and_day_with_exact_totals(
    gateway: Gateway, metered: tuple[str, str]
) -> None:
    tenant_id, key = metered
    async with _client(gateway, key) as client:
        minutes = (await client.get("/v1/usage", params=_range(HOUR, HOUR + timedelta(hours=3), "minute"))).json()
        hours = (await client.get("/v1/usage", params=_range(HOUR, HOUR + timedelta(hours=3), "hour"))).json()
        day = await client.get("/v1/usage", params=_range(HOUR - timedelta(days=1), HOUR + timedelta(days=1), "day"))
    assert day.status_code == 200, day.text
    assert minutes["tenant_id"] == tenant_id and minutes["granularity"] == "minute"
    assert [bucket["questions"] for bucket in minutes["buckets"]] == [3, 7, 0]  # empty minutes are left out
    assert [bucket["questions"] for bucket in hours["buckets"]] == [10, 0]
    assert [bucket["documents_ingested"] for bucket in hours["buckets"]] == [0, 3]
    assert datetime.fromisoformat(hours["buckets"][1]["start"]) == HOUR + timedelta(hours=1)
    expected = {"questions": 10, "searches": 1, "documents_ingested": 3, "bytes_ingested": 4096}
    expected |= {"chunks_embedded": 12, "tokens_in": 2000, "tokens_out": 300, "connector_items_synced": 0}
    for view in (minutes, hours, day.json()):
        assert view["totals"] == expected
    assert len(day.json()["buckets"]) == 1


async def test_a_tenant_sees_only_its_own_usage(gateway: Gateway, metered: tuple[str, str]) -> None:
    _, other_key = await _tenant(gateway)
    async with _client(gateway, other_key) as client:
        view = (await client.get("/v1/usage", params=_range(HOUR, HOUR + timedelta(hours=3), "hour"))).json()
        cost = (await client.get("/v1/usage/cost", params={"from": HOUR.isoformat()})).json()
    assert view["buckets"] == [] and set(view["totals"].values()) == {0}
    assert Decimal(cost["total"]) == 0 and cost["budget"] is None


async def test_ranges_past_the_limits_are_problems(gateway: Gateway, metered: tuple[str, str]) -> None:
    _, key = metered
    async with _client(gateway, key) as client:
        too_many = await client.get("/v1/usage", params=_range(HOUR, HOUR + timedelta(days=2), "minute"))
        reversed_ = await client.get("/v1/usage", params=_range(HOUR, HOUR - timedelta(hours=1), "hour"))
        unknown = await client.get("/v1/usage", params={"granularity": "week"})
        unix_seconds = await client.get("/v1/usage/cost", params={"to": "0.5"})  # pydantic would read 1970
        default = await client.get("/v1/usage")
    for refused in (too_many, reversed_):
        assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM_JSON
        assert refused.json()["type"] == "urn:ragstream:problem:invalid-usage-range"
    assert (unknown.status_code, unix_seconds.status_code) == (422, 422)
    assert default.status_code == 200 and default.json()["granularity"] == "hour"


async def test_the_usage_api_needs_a_key_with_documents_read(gateway: Gateway) -> None:
    _, query_key = await _tenant(gateway, scopes=["query"])
    async with _client(gateway, query_key) as client:
        assert (await client.get("/v1/usage")).status_code == 403
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(*gateway)), base_url="http://g") as anon:
        assert (await anon.get("/v1/usage/cost")).status_code == 401


async def test_admins_read_any_tenants_usage_and_cost_and_set_budgets(
    gateway: Gateway, metered: tuple[str, str]
) -> None:
    tenant_id, key = metered
    base = f"/v1/admin/tenants/{tenant_id}"
    async with _client(gateway) as admin:
        usage = await admin.get(f"{base}/usage/metered", params=_range(HOUR, HOUR + timedelta(hours=3), "hour"))
        cost = await admin.get(f"{base}/usage/cost", params={"from": HOUR.isoformat()})
        budget = await admin.put(f"{base}/budget", json={"monthly_budget": "250.5"})
        wrong_currency = await admin.put(f"{base}/budget", json={"monthly_budget": "1", "currency": "EUR"})
        missing = await admin.get(f"/v1/admin/tenants/nobody-{RUN}/usage/metered")
        missing_budget = await admin.put(f"/v1/admin/tenants/nobody-{RUN}/budget", json={"monthly_budget": "1"})
    assert usage.status_code == 200 and usage.json()["totals"]["questions"] == 10
    assert cost.status_code == 200, cost.text
    metrics = cost.json()["metrics"]
    assert (Decimal(metrics["questions"]["cost"]), Decimal(metrics["tokens_in"]["cost"])) == (
        Decimal("0.01"),
        Decimal(1),
    )
    assert Decimal(cost.json()["total"]) == Decimal("1.01") and cost.json()["currency"] == "USD"
    assert budget.status_code == 200 and Decimal(budget.json()["monthly_budget"]) == Decimal("250.5")
    assert wrong_currency.status_code == 422
    assert (missing.status_code, missing_budget.status_code) == (404, 404)
    async with _client(gateway, key) as client:
        own = (await client.get("/v1/usage/cost")).json()
        assert (await client.get(f"{base}/usage/cost")).status_code == 403  # a tenant key is no admin credential
    assert Decimal(own["budget"]["monthly_budget"]) == Decimal("250.5") and own["budget"]["ratio"] == 0.0


async def test_the_budget_gauge_lists_every_tenant_with_a_budget(
    gateway: Gateway, metered: tuple[str, str], migrated_database: str
) -> None:
    _, deps = gateway
    tenant_id, _ = metered
    now = datetime.now(UTC)
    await _meter(migrated_database, tenant_id, now.replace(second=0, microsecond=0), questions=2000)
    assert deps.usage is not None
    await deps.usage.set_budget(tenant_id, Budget(Decimal("4"), "USD"))
    ratios = await UsageService(deps.usage, PRICES).budget_ratios(now)
    assert ratios[tenant_id] == 0.5  # $2 of questions this month against $4
