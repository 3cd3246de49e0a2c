"""Moving-window rate limits per tenant, key and address over the limits library's in-memory storage (the same
limiter against a real Redis, stopped and restarted: tests/integration/test_gateway_limits_redis.py)."""

from __future__ import annotations

import asyncio

import pytest
from ragstream_gateway.ratelimit import (
    RateDecision,
    TenantRateLimiter,
    address_bucket,
    covered,
    normalise_storage_uri,
    parse_limits,
    refusal_problem,
    validate_limit,
)

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


def test_plain_redis_urls_name_the_async_storage() -> None:
    assert normalise_storage_uri("redis://:pw@h:6379/0") == "async+redis://:pw@h:6379/0"
    assert normalise_storage_uri("rediss://:pw@h:6380/0") == "async+rediss://:pw@h:6380/0"
    assert normalise_storage_uri("memory://") == "async+memory://"
    assert normalise_storage_uri("async+redis://h") == "async+redis://h"


async def test_a_key_is_limited_beside_its_tenant() -> None:
    limiter = TenantRateLimiter("async+memory://", "10/minute", key_limit="2/minute")
    first = [(await limiter.admit("acme", "k1")).allowed for _ in range(3)]
    assert first == [True, True, False]
    refused = await limiter.admit("acme", "k1")
    assert (refused.scope, refused.limit) == ("key", "2/minute")
    assert (await limiter.admit("acme", "k2")).allowed  # another key of the tenant has its own window


async def test_a_request_refused_by_its_key_spends_nothing_of_its_tenant() -> None:
    limiter = TenantRateLimiter("async+memory://", "3/minute", key_limit="1/minute")
    assert (await limiter.admit("acme", "runaway")).allowed
    assert [(await limiter.admit("acme", "runaway")).allowed for _ in range(5)] == [False] * 5
    assert [(await limiter.admit("acme", f"k{i}")).allowed for i in range(3)] == [True, True, False]


async def test_the_tenant_limit_spans_all_its_keys() -> None:
    limiter = TenantRateLimiter("async+memory://", "3/minute", key_limit="10/minute")
    results = [(await limiter.admit("acme", f"k{i % 2}")).allowed for i in range(4)]
    assert results == [True, True, True, False]
    assert (await limiter.admit("acme", "k9")).scope == "tenant"
    assert (await limiter.admit("other", "k0")).allowed


async def test_unknown_keys_are_limited_per_address_before_any_lookup() -> None:
    limiter = TenantRateLimiter("async+memory://", "100/minute", address_limit="2/minute")
    for _ in range(2):
        assert (await limiter.address_refused("203.0.113.7", "digest-x")).allowed
        await limiter.charge_address("203.0.113.7")
    refused = await limiter.address_refused("203.0.113.7", "digest-x")
    assert not refused.allowed and refused.scope == "address" and refused.retry_after_s >= 1
    assert not (await limiter.address_refused("203.0.113.7", None)).allowed  # no key at all: same budget
    assert (await limiter.address_refused("203.0.113.8", "digest-x")).allowed


async def test_a_key_seen_valid_skips_its_address_check() -> None:
    limiter = TenantRateLimiter("async+memory://", "100/minute", address_limit="1/minute")
    await limiter.charge_address("198.51.100.1")
    limiter.remember_valid("good")
    assert (await limiter.address_refused("198.51.100.1", "good")).allowed
    assert not (await limiter.address_refused("198.51.100.1", "guess")).allowed


async def test_checking_an_address_counts_nothing() -> None:
    limiter = TenantRateLimiter("async+memory://", "100/minute", address_limit="1/minute")
    for _ in range(5):
        assert (await limiter.address_refused("192.0.2.1", None)).allowed


def test_ipv6_clients_are_counted_per_64() -> None:
    assert address_bucket("2001:db8:1:2:aaaa::1") == address_bucket("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_bucket("2001:db8:1:3::1") != address_bucket("2001:db8:1:2::1")
    assert address_bucket("::ffff:192.0.2.5") == "192.0.2.5"
    assert address_bucket("192.0.2.5") == "192.0.2.5"
    assert address_bucket("") == "unknown"


def test_a_refusal_is_429_and_an_unreachable_store_503_both_with_retry_after() -> None:
    limited = refusal_problem(RateDecision(False, retry_after_s=7, limit="3/minute", scope="key"))
    assert (limited.status, limited.headers["Retry-After"], limited.extensions["scope"]) == (429, "7", "key")
    assert limited.type.endswith("rate-limited") and "3/minute" in limited.detail
    down = refusal_problem(RateDecision(False, retry_after_s=2, limit="3/minute", unavailable=True))
    assert (down.status, down.headers["Retry-After"]) == (503, "2")
    assert down.type.endswith("rate-limit-unavailable")


def test_a_window_is_covered_by_one_of_the_same_length_with_no_larger_amount() -> None:
    assert covered("600/minute", "600/minute") and covered("600/minute", "100/minute")
    assert not covered("600/minute", "6000/minute")  # the tenant's bigger budget: the key's window counts
    assert not covered("10/second", "600/minute")  # another length: a burst the tenant's window allows
    assert covered("10/second;600/minute", "5/second;600/minute")
    assert not covered("10/second;600/minute", "600/minute")


async def test_a_key_window_its_tenant_covers_costs_no_store_call(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = TenantRateLimiter("async+memory://", "2/minute", key_limit="2/minute")
    calls: list[str] = []
    for name in ("hit", "test"):
        original = getattr(limiter._limiter, name)

        def counted(*args: object, _name: str = name, _original: object = original) -> object:
            calls.append(f"{_name} {args[1]}")
            return _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(limiter._limiter, name, counted)
    assert [(await limiter.admit("acme", "k1")).allowed for _ in range(3)] == [True, True, False]
    assert set(calls) == {"hit tenant"} and len(calls) == 3  # one call per request, the tenant's window
    calls.clear()
    decision = await limiter.admit("acme", "k1", "100/minute")  # the tenant's budget raised: its keys count now
    assert decision.allowed and {c.split()[1] for c in calls} == {"tenant", "key"}
