"""Per-tenant moving-window rate limits over the limits library's in-memory storage."""

from __future__ import annotations

import asyncio
from unittest.mock import AsyncMock

import pytest
from ragstream_gateway.ratelimit import TenantRateLimiter, parse_limits, validate_limit

pytestmark = pytest.mark.unit


async def test_admits_up_to_the_limit_then_refuses_with_retry_after() -> None:
    limiter = TenantRateLimiter("async-memory://", "3/minute")
    decisions = [await limiter.check("acme") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    refused = decisions[-1]
    assert 1 <= refused.retry_after_s <= 60
    assert refused.limit == "3/minute"


async def test_tenants_are_counted_separately() -> None:
    limiter = TenantRateLimiter("async-memory://", "1/minute")
    assert (await limiter.check("a")).allowed
    assert not (await limiter.check("a")).allowed
    assert (await limiter.check("b")).allowed


async def test_a_tenant_limit_replaces_the_default() -> None:
    limiter = TenantRateLimiter("async-memory://", "1/minute")
    results = [(await limiter.check("big", "5/minute")).allowed for _ in range(6)]
    assert results == [True] * 5 + [False]


async def test_every_window_of_a_multi_limit_counts() -> None:
    limiter = TenantRateLimiter("async-memory://", "100/minute")
    results = [(await limiter.check("t", "2/second;100/minute")).allowed for _ in range(3)]
    assert results == [True, True, False]


async def test_moving_window_admits_again_after_the_window() -> None:
    limiter = TenantRateLimiter("async-memory://", "1/second")
    assert (await limiter.check("t")).allowed
    refused = await limiter.check("t")
    assert not refused.allowed and refused.retry_after_s == 1
    await asyncio.sleep(1.05)
    assert (await limiter.check("t")).allowed


def test_limit_notation_is_validated() -> None:
    assert validate_limit("10/second; 100/minute") == "10/second; 100/minute"
    assert len(parse_limits("10/second;100/minute")) == 2
    with pytest.raises(ValueError):
        validate_limit("lots")


@pytest.mark.parametrize("uri", ["async+memory://", "async-memory://"])
async def test_both_storage_spellings_work(uri: str) -> None:
    assert (await TenantRateLimiter(uri, "1/minute").check("t")).allowed


async def test_an_unreachable_storage_admits_requests() -> None:
    limiter = TenantRateLimiter("async+memory://", "1/minute")
    failing = AsyncMock(side_effect=ConnectionError("redis down"))
    limiter._limiter.test = failing  # type: ignore[method-assign]
    assert (await limiter.check("t")).allowed
    assert (await limiter.check("t")).allowed
