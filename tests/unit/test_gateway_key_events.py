"""Pushed key changes: what the listener's events do to the key cache, the fallback while it is disconnected, and
last-use bookkeeping (no I/O: an in-memory directory stands in for Postgres)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ragstream_gateway.adapters.key_cache import CachedTenantDirectory
from ragstream_gateway.adapters.key_events_pg import dispatch, open_key_directory
from ragstream_gateway.adapters.key_usage_pg import PostgresKeyUsage
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.ports import KeyGrant

pytestmark = pytest.mark.unit


class Directory:
    """The lookups of a TenantDirectory, in memory, counting calls."""

    def __init__(self) -> None:
        self.grants: dict[str, KeyGrant] = {}
        self.disabled: set[str] = set()
        self.lookups = 0
        self.gate: asyncio.Event | None = None

    async def find_key(self, key_sha256: str) -> KeyGrant | None:
        self.lookups += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.grants.get(key_sha256)

    async def tenant_disabled(self, tenant_id: str) -> bool:
        self.lookups += 1
        return tenant_id in self.disabled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def grant(key_id: str, tenant_id: str = "acme", **changes: Any) -> KeyGrant:
    fields: dict[str, Any] = {
        "key_id": key_id,
        "tenant_id": tenant_id,
        "scopes": ("query",),
        "revoked": False,
        "expires_at": None,
        "rate_limit": None,
        "ip_allowlist": (),
    }
    return KeyGrant(**{**fields, **changes})


def cache_over(directory: Directory, clock: Clock, *, fallback: float | None = 1.0) -> CachedTenantDirectory:
    return CachedTenantDirectory(directory, ttl_s=300, clock=clock, fallback_ttl_s=fallback)  # type: ignore[arg-type]


async def test_events_evict_exactly_the_changed_key_or_tenant() -> None:
    directory, clock = Directory(), Clock()
    directory.grants.update({"a1": grant("k1"), "a2": grant("k2"), "b1": grant("k3", "beta")})
    cache = cache_over(directory, clock)
    cache.listening(True)
    for digest in ("a1", "a2", "b1"):
        await cache.find_key(digest)
    directory.grants["a1"] = grant("k1", revoked=True)
    dispatch('{"kind": "key", "tenant_id": "acme", "key_id": "k1"}', cache)
    assert (await cache.find_key("a1")).revoked  # type: ignore[union-attr]
    assert directory.lookups == 4  # a2 and b1 still cached
    dispatch('{"kind": "tenant", "tenant_id": "acme"}', cache)
    await cache.find_key("a2")
    await cache.find_key("b1")
    assert directory.lookups == 5
    dispatch("not json", cache)  # unreadable: everything goes
    await cache.find_key("b1")
    assert directory.lookups == 6


async def test_grants_live_the_full_ttl_only_while_listening() -> None:
    directory, clock = Directory(), Clock()
    directory.grants["a1"] = grant("k1")
    cache = cache_over(directory, clock)
    assert cache.ttl_s == 1.0  # not connected yet
    await cache.find_key("a1")
    clock.now += 1.1
    await cache.find_key("a1")
    assert directory.lookups == 2
    cache.listening(True)
    assert cache.ttl_s == 300
    await cache.find_key("a1")
    clock.now += 200
    await cache.find_key("a1")
    assert directory.lookups == 3
    cache.listening(False)  # lost: what is cached may have missed events
    await cache.find_key("a1")
    assert directory.lookups == 4 and cache.ttl_s == 1.0
    without_events = cache_over(directory, clock, fallback=None)
    assert without_events.ttl_s == 300


async def test_a_lookup_in_flight_during_an_event_is_not_cached() -> None:
    directory, clock = Directory(), Clock()
    directory.grants["a1"] = grant("k1")
    cache = cache_over(directory, clock)
    cache.listening(True)
    directory.gate = asyncio.Event()
    lookup = asyncio.ensure_future(cache.find_key("a1"))
    await asyncio.sleep(0)
    cache.key_changed("acme", "k1")  # the revocation commits while the old grant is on its way
    directory.gate.set()
    assert await lookup == grant("k1")
    directory.gate = None
    directory.grants["a1"] = grant("k1", revoked=True)
    assert (await cache.find_key("a1")).revoked  # type: ignore[union-attr]


async def test_disabled_tenants_are_cached_and_follow_tenant_events() -> None:
    directory, clock = Directory(), Clock()
    cache = cache_over(directory, clock)
    cache.listening(True)
    assert not await cache.tenant_disabled("acme")
    directory.disabled.add("acme")
    assert not await cache.tenant_disabled("acme")  # cached
    cache.tenant_changed("acme")
    assert await cache.tenant_disabled("acme")
    assert directory.lookups == 2


def test_a_key_is_queued_for_its_last_use_at_most_once_a_minute() -> None:
    clock = Clock()
    usage = PostgresKeyUsage(None, clock=clock, max_keys=2)  # type: ignore[arg-type]  # no flush here
    usage.note("k1")
    usage.note("k1")
    assert usage._pending == {"k1"}
    usage._pending.clear()
    clock.now += 59
    usage.note("k1")
    assert usage._pending == set()
    clock.now += 2
    usage.note("k1")
    usage.note("k2")
    usage.note("k3")  # bounded: k1 forgotten, noted again next time
    assert usage._pending == {"k1", "k2", "k3"} and list(usage._noted) == ["k2", "k3"]


def test_the_end_of_a_grace_period_is_an_expiry() -> None:
    rotated = grant("k1", expires_at=datetime.now(UTC) - timedelta(seconds=1), replaced_by="k2")
    assert rotated.expired and not rotated.revoked


async def test_without_the_listener_grants_live_the_full_ttl() -> None:
    settings = GatewaySettings(key_events_enabled=False, key_cache_ttl_s=7)
    async with AsyncExitStack() as stack:
        cache = await open_key_directory(stack, settings, Directory())  # type: ignore[arg-type]
    assert cache.ttl_s == 7
