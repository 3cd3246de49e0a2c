"""The gateway's API key cache: reuse within the TTL, never cache unknown keys, drop revoked keys at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from ragstream_gateway.adapters.key_cache import CachedTenantDirectory
from ragstream_gateway.ports import ApiKeyRecord, KeyGrant, TenantRecord

pytestmark = pytest.mark.unit


class CountingDirectory:
    """An in-memory TenantDirectory port that counts lookups."""

    def __init__(self) -> None:
        self.grants: dict[str, KeyGrant] = {}
        self.lookups = 0

    async def find_key(self, key_sha256: str) -> KeyGrant | None:
        self.lookups += 1
        return self.grants.get(key_sha256)

    async def revoke_key(self, tenant_id: str, key_id: str, *, audit: object = None) -> bool:
        for digest, grant in self.grants.items():
            if grant.tenant_id == tenant_id and grant.key_id == key_id:
                self.grants[digest] = KeyGrant(
                    grant.key_id,
                    grant.tenant_id,
                    grant.scopes,
                    True,
                    grant.expires_at,
                    grant.rate_limit,
                    grant.ip_allowlist,
                )
                return True
        return False

    async def create_tenant(
        self, tenant_id: str, name: str, rate_limit: str | None, ip_allowlist: Sequence[object]
    ) -> TenantRecord | None:
        return TenantRecord(tenant_id, name, rate_limit, (), datetime.now(UTC))

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        return None

    async def create_key(
        self, tenant_id: str, key: str, name: str, scopes: Sequence[str], expires_at: datetime | None
    ) -> ApiKeyRecord:
        return ApiKeyRecord("k", tenant_id, name, tuple(scopes), datetime.now(UTC), expires_at)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _grant(key_id: str = "k1", tenant_id: str = "acme", expires_at: datetime | None = None) -> KeyGrant:
    return KeyGrant(key_id, tenant_id, ("query",), False, expires_at, None, ())


async def test_a_grant_is_reused_within_the_ttl_and_looked_up_again_after() -> None:
    directory, clock = CountingDirectory(), Clock()
    directory.grants["d1"] = _grant()
    cache = CachedTenantDirectory(directory, ttl_s=5.0, clock=clock)
    assert await cache.find_key("d1") == _grant()
    clock.now += 4.9
    assert await cache.find_key("d1") == _grant()
    assert directory.lookups == 1
    clock.now += 0.2
    await cache.find_key("d1")
    assert directory.lookups == 2


async def test_unknown_keys_are_never_cached() -> None:
    directory = CountingDirectory()
    cache = CachedTenantDirectory(directory, ttl_s=60.0, clock=Clock())
    assert await cache.find_key("new") is None
    directory.grants["new"] = _grant()  # created meanwhile, e.g. through another gateway instance
    assert await cache.find_key("new") == _grant()


async def test_revoking_through_the_cache_takes_effect_at_once() -> None:
    directory = CountingDirectory()
    directory.grants["d1"] = _grant()
    cache = CachedTenantDirectory(directory, ttl_s=60.0, clock=Clock())
    assert not (await cache.find_key("d1")).revoked  # type: ignore[union-attr]
    assert await cache.revoke_key("acme", "k1")
    assert (await cache.find_key("d1")).revoked  # type: ignore[union-attr]


async def test_a_cached_grant_still_expires_on_time() -> None:
    directory = CountingDirectory()
    directory.grants["d1"] = _grant(expires_at=datetime.now(UTC) + timedelta(milliseconds=50))
    cache = CachedTenantDirectory(directory, ttl_s=60.0, clock=Clock())
    assert not (await cache.find_key("d1")).expired  # type: ignore[union-attr]
    await asyncio.sleep(0.1)
    assert (await cache.find_key("d1")).expired  # type: ignore[union-attr]
    assert directory.lookups == 1


async def test_ttl_zero_asks_every_time_and_the_cache_is_bounded() -> None:
    directory = CountingDirectory()
    for n in range(5):
        directory.grants[f"d{n}"] = _grant(key_id=f"k{n}")
    uncached = CachedTenantDirectory(directory, ttl_s=0, clock=Clock())
    await uncached.find_key("d0")
    await uncached.find_key("d0")
    assert directory.lookups == 2
    bounded = CachedTenantDirectory(directory, ttl_s=60.0, max_entries=2, clock=Clock())
    for n in range(5):
        await bounded.find_key(f"d{n}")
    directory.lookups = 0
    await bounded.find_key("d4")
    await bounded.find_key("d0")  # evicted: the oldest entries go first
    assert directory.lookups == 1
