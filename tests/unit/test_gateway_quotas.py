"""Tenant quotas over the limits library's in-memory storage and a stand-in QuotaStore: what an upload adds, the
daily question counter, the upload lock, and the 429 problems of the HTTP routes. The same against real Redis
and Postgres: tests/integration/test_gateway_limits_redis.py and test_gateway_quotas_api.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from unittest.mock import AsyncMock

import httpx
import pytest
from fakes import RecordingSink
from fakes.quotas import MemoryQuotaStore
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.ports import DocumentRecord, StoredUsage, TenantQuotas
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.query.replies import PendingQueries
from ragstream_gateway.query.service import QueryDispatcher
from ragstream_gateway.quota_models import QuotasIn
from ragstream_gateway.quotas import QuotaEnforcer, QuotaExceeded, QuotaSettings, effective_quotas, upload_growth
from ragstream_gateway.ratelimit import TenantRateLimiter
from unit.gateway_deps import gateway_deps, grant

pytestmark = pytest.mark.unit
KEY = "quota-test-key"
NO_LIMITS = QuotaSettings(max_documents=None, max_stored_bytes=None, max_questions_per_day=None)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 23, 59, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _enforcer(
    store: MemoryQuotaStore, settings: QuotaSettings = NO_LIMITS, clock: Clock | None = None
) -> QuotaEnforcer:
    storage = TenantRateLimiter("async+memory://", "1000/minute").storage
    return QuotaEnforcer(store, storage, settings, clock=clock or Clock())


def _record(status: str = "indexed", size_bytes: int = 100) -> DocumentRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return DocumentRecord(
        "acme",
        "d1",
        1,
        status,
        "",
        {},
        "text/plain",
        "sha",
        size_bytes,
        "",
        0,
        None,
        None,
        at,
        at,
        None,
        None,  # type: ignore[arg-type]
    )


def test_a_tenants_own_quotas_replace_the_defaults_field_by_field() -> None:
    defaults = TenantQuotas(10, 1000, 5)
    assert effective_quotas(TenantQuotas(max_documents=3), defaults) == TenantQuotas(3, 1000, 5)
    assert effective_quotas(TenantQuotas(max_questions_per_day=0), defaults) == TenantQuotas(10, 1000, 0)


def test_what_an_upload_adds() -> None:
    assert upload_growth(None, 50) == (1, 50)
    assert upload_growth(_record(size_bytes=100), 130) == (0, 30)  # a new version: no new document
    assert upload_growth(_record(size_bytes=100), 100) == (0, 0)  # an identical re-upload adds nothing
    assert upload_growth(_record(status="deleted", size_bytes=100), 40) == (1, 40)  # a deleted one counts anew


async def test_a_new_document_past_the_document_quota_is_refused() -> None:
    store = MemoryQuotaStore(quotas={"acme": TenantQuotas(max_documents=2)}, stored={"acme": StoredUsage(2, 10)})
    quotas = _enforcer(store)
    with pytest.raises(QuotaExceeded) as refused:
        await quotas.check_upload("acme", None, 1)
    assert (refused.value.quota, refused.value.limit, refused.value.used) == ("documents", 2, 2)
    await quotas.check_upload("acme", _record(), 5_000)  # a new version of a live document is not a new document


async def test_bytes_are_refused_only_when_an_upload_grows_them_past_the_quota() -> None:
    store = MemoryQuotaStore(quotas={"acme": TenantQuotas(max_stored_bytes=1000)}, stored={"acme": StoredUsage(3, 950)})
    quotas = _enforcer(store)
    await quotas.check_upload("acme", _record(size_bytes=100), 150)  # 950 - 100 + 150 = 1000: fits exactly
    with pytest.raises(QuotaExceeded) as refused:
        await quotas.check_upload("acme", _record(size_bytes=100), 151)
    assert (refused.value.quota, refused.value.limit, refused.value.used) == ("stored_bytes", 1000, 950)
    store.stored["acme"] = StoredUsage(3, 5000)  # over a lowered quota: shrinking or equal still passes
    await quotas.check_upload("acme", _record(size_bytes=100), 100)
    await quotas.check_upload("acme", _record(size_bytes=100), 20)


async def test_questions_are_counted_per_utc_day_and_a_refused_one_is_not() -> None:
    clock = Clock()
    store = MemoryQuotaStore(quotas={"acme": TenantQuotas(max_questions_per_day=2)})
    quotas = _enforcer(store, clock=clock)
    await quotas.charge_question("acme")
    await quotas.charge_question("acme")
    for _ in range(2):
        with pytest.raises(QuotaExceeded) as refused:
            await quotas.charge_question("acme")
    assert (refused.value.quota, refused.value.limit, refused.value.used) == ("questions_per_day", 2, 2)
    assert refused.value.retry_after_s == 60  # 23:59 UTC: the day ends in a minute
    report = await quotas.usage("acme")
    assert [(u.quota, u.limit, u.used, u.overridden) for u in report.quotas][2] == ("questions_per_day", 2, 2, True)
    await quotas.charge_question("other")  # another tenant: no quota of its own, no default
    clock.now += timedelta(minutes=2)
    await quotas.charge_question("acme")  # a new day
    assert (await quotas.usage("acme")).day.isoformat() == "2026-03-02"


async def test_quotas_are_reused_until_they_are_set_again() -> None:
    store = MemoryQuotaStore()
    quotas = _enforcer(store, QuotaSettings(max_documents=5, max_stored_bytes=None, max_questions_per_day=None))
    assert (await quotas.effective("acme")).max_documents == 5
    await quotas.effective("acme")
    assert store.reads == 1
    await quotas.set_quotas("acme", TenantQuotas(max_documents=1))
    assert (await quotas.effective("acme")).max_documents == 1
    with pytest.raises(LookupError):
        await quotas.set_quotas("nobody", TenantQuotas())


async def test_the_upload_lock_admits_one_holder_at_a_time() -> None:
    quotas = _enforcer(MemoryQuotaStore())
    order: list[str] = []

    async def hold(name: str) -> None:
        async with quotas.upload_lock("acme"):
            order.append(f"{name}+")
            await asyncio.sleep(0.05)
            order.append(f"{name}-")

    await asyncio.gather(hold("a"), hold("b"))
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
    async with quotas.upload_lock("acme"):  # released: taken again at once
        pass


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryQuotaStore, GatewayDeps]]:
    limiter = TenantRateLimiter("async+memory://", "1000/minute")
    store = MemoryQuotaStore(stored={"acme": StoredUsage(0, 0)})
    quotas = QuotaEnforcer(store, limiter.storage, NO_LIMITS)
    deps = gateway_deps(grants={KEY: grant()}, limiter=limiter, quotas=quotas)
    deps.registry.get.return_value = None  # type: ignore[attr-defined]
    queries = QueryDispatcher(RecordingSink(), PendingQueries(), "gw:1")
    app = create_app(GatewaySettings(admin_token=None), deps, queries=queries)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers={"X-API-Key": KEY}) as c:
        yield c, store, deps


def _quota_problem(response: httpx.Response, quota: str) -> dict[str, object]:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "urn:ragstream:problem:quota-exceeded" and body["quota"] == quota
    return body


async def test_a_question_past_the_daily_quota_is_429_naming_it(
    client: tuple[httpx.AsyncClient, MemoryQuotaStore, GatewayDeps],
) -> None:
    http, store, _ = client
    store.quotas["acme"] = TenantQuotas(max_questions_per_day=2)
    asked = [await http.post("/v1/search", json={"query": "why?", "timeout_ms": 20}) for _ in range(2)]
    assert [r.status_code for r in asked] == [504, 504]  # counted: nothing answers in this test
    refused = await http.post("/v1/query", json={"question": "why?", "timeout_ms": 20})
    body = _quota_problem(refused, "questions_per_day")
    assert (body["limit"], body["used"]) == (2, 2)
    assert 1 <= int(refused.headers["Retry-After"]) <= 86_400


async def test_an_upload_past_the_document_quota_is_429_naming_it(
    client: tuple[httpx.AsyncClient, MemoryQuotaStore, GatewayDeps],
) -> None:
    http, store, deps = client
    store.quotas["acme"] = TenantQuotas(max_documents=1)
    store.stored["acme"] = StoredUsage(1, 10)
    refused = await http.post("/v1/documents", files={"file": ("d2.txt", b"hello", "text/plain")}, data={"id": "d2"})
    body = _quota_problem(refused, "documents")
    assert (body["limit"], body["used"]) == (1, 1)
    assert "Retry-After" not in refused.headers  # waiting does not free a document
    # Refused before anything is stored, registered or published.
    assert isinstance(deps.registry, AsyncMock) and deps.registry.register.await_count == 0
    assert isinstance(deps.blobs, AsyncMock) and deps.blobs.put.await_count == 0


def test_a_patch_replaces_the_quotas_it_names_and_keeps_the_others() -> None:
    current = TenantQuotas(max_documents=5, max_stored_bytes=1000, max_questions_per_day=50)
    patch = QuotasIn.model_validate({"max_documents": 7, "max_questions_per_day": None})
    assert patch.merged_into(current) == TenantQuotas(7, 1000, None)
    assert QuotasIn().merged_into(current) == current
    with pytest.raises(ValueError):
        QuotasIn.model_validate({"max_documents": -1})


def test_an_empty_default_quota_means_no_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_QUOTA_MAX_DOCUMENTS", "")
    monkeypatch.setenv("GATEWAY_QUOTA_MAX_STORED_BYTES", "none")
    monkeypatch.setenv("GATEWAY_QUOTA_MAX_QUESTIONS_PER_DAY", "500")
    assert GatewaySettings().quotas.defaults() == TenantQuotas(None, None, 500)
