"""Rate limits and quota counters against a real, password-protected Redis: windows shared by replicas (each
limiter here has its own Redis client, as each gateway process does), fail closed while Redis is down, and
recovery once it is back."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator

import pytest
from fakes import metric
from fakes.quotas import MemoryQuotaStore
from ragstream_devstack.redis import LocalRedis
from ragstream_gateway.ports import TenantQuotas
from ragstream_gateway.quotas import QuotaEnforcer, QuotaExceeded, QuotaSettings
from ragstream_gateway.ratelimit import LimitStoreUnavailable, RateDecision, TenantRateLimiter

pytestmark = pytest.mark.integration
NO_DEFAULTS = QuotaSettings(max_documents=None, max_stored_bytes=None, max_questions_per_day=None)
OWN_PASSWORD = secrets.token_urlsafe(16)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _replicas(url: str, count: int = 2, **options: object) -> list[TenantRateLimiter]:
    return [TenantRateLimiter(url, "5/minute", **options) for _ in range(count)]  # type: ignore[arg-type]


async def test_replicas_share_the_tenant_and_key_windows(redis_url: str) -> None:
    a, b = _replicas(redis_url, key_limit="3/minute")
    tenant = _unique("t")
    by_key = [(await limiter.admit(tenant, "k1")).allowed for limiter in (a, b, a, b)]
    assert by_key == [True, True, True, False]
    # A request its key's window refuses spends nothing of its tenant's: 3 of 5 used, 2 left for k2.
    assert [(await limiter.admit(tenant, "k2")).allowed for limiter in (a, b)] == [True, True]
    refused = await b.admit(tenant, "k3")
    assert (refused.allowed, refused.scope) == (False, "tenant")
    assert 1 <= refused.retry_after_s <= 60
    assert (await a.admit(_unique("t"), "k1")).allowed


async def test_unknown_keys_are_counted_per_address_across_replicas(redis_url: str) -> None:
    a, b = _replicas(redis_url, address_limit="2/minute")
    address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    await a.charge_address(address)
    await b.charge_address(address)
    refused = await a.address_refused(address, "some-digest")
    assert (refused.allowed, refused.scope) == (False, "address")
    assert (await b.address_refused("2001:db8::1", "some-digest")).allowed


async def test_daily_questions_are_one_counter_for_all_replicas(redis_url: str) -> None:
    tenant = _unique("q")
    store = MemoryQuotaStore(quotas={tenant: TenantQuotas(max_questions_per_day=3)})
    replicas = [QuotaEnforcer(store, limiter.storage, NO_DEFAULTS) for limiter in _replicas(redis_url)]
    for index in range(3):
        await replicas[index % 2].charge_question(tenant)
    with pytest.raises(QuotaExceeded) as refused:
        await replicas[1].charge_question(tenant)
    assert (refused.value.limit, refused.value.used) == (3, 3)
    assert [u.used for u in (await replicas[0].usage(tenant)).quotas] == [0, 0, 3]


@pytest.fixture
def own_redis() -> Iterator[LocalRedis]:
    """A Redis this test may stop and start again (on the same port, with the same password)."""
    redis = LocalRedis(password=OWN_PASSWORD).start()
    yield redis
    redis.stop()


def _restart(redis: LocalRedis) -> LocalRedis:
    return LocalRedis(password=OWN_PASSWORD, port=redis.port).start()


async def _until_admitted(limiter: TenantRateLimiter, tenant: str, timeout_s: float = 10) -> RateDecision:
    deadline = time.monotonic() + timeout_s
    while True:
        decision = await limiter.admit(tenant, "k")
        if decision.allowed or time.monotonic() > deadline:
            return decision
        await asyncio.sleep(0.2)


async def test_while_redis_is_down_requests_are_refused_then_admitted_once_it_is_back(
    own_redis: LocalRedis,
) -> None:
    closed = TenantRateLimiter(own_redis.url, "100/minute", key_limit="100/minute", address_limit="10/minute")
    fail_open = TenantRateLimiter(own_redis.url, "100/minute", fail_open=True)
    quotas = QuotaEnforcer(MemoryQuotaStore(), closed.storage, QuotaSettings(max_questions_per_day=10))
    tenant = _unique("down")
    assert (await closed.admit(tenant, "k")).allowed
    await quotas.charge_question(tenant)
    refusals = metric("ragstream_gateway_limit_store_errors_total", outcome="refused")

    own_redis.stop()
    started = time.monotonic()
    down = await closed.admit(tenant, "k")
    assert (down.allowed, down.unavailable, down.retry_after_s) == (False, True, 2)
    assert not (await closed.address_refused("192.0.2.9", None)).allowed
    assert time.monotonic() - started < 3  # refused at once, not after a long connect timeout
    with pytest.raises(LimitStoreUnavailable):
        await quotas.charge_question(tenant)
    admitted = await fail_open.admit(tenant, "k")
    assert (admitted.allowed, admitted.unavailable) == (True, True)
    assert metric("ragstream_gateway_limit_store_errors_total", outcome="refused") >= refusals + 3

    restarted = _restart(own_redis)
    try:
        back = await _until_admitted(closed, tenant)
        assert (back.allowed, back.unavailable) == (True, False)
        await quotas.charge_question(tenant)  # a restarted Redis starts empty: counters begin again
    finally:
        restarted.stop()
