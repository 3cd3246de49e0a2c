"""API key grants held in memory for a few seconds, so a request does not wait on Postgres to authenticate.

Revoking a key through this instance drops it from the cache at once; another gateway instance may still admit
it until its own entry ages out (`GATEWAY_KEY_CACHE_TTL_S`). Unknown keys are never cached, so a key created
anywhere works on its first request everywhere. Expiry is checked at each use (`KeyGrant.expired`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime

from ragstream_gateway.ports import ApiKeyRecord, KeyGrant, TenantDirectory, TenantRecord
from ragstream_gateway.security import IPNetwork


class CachedTenantDirectory:
    """A `TenantDirectory` whose `find_key` answers from a bounded, time-limited cache."""

    def __init__(
        self,
        directory: TenantDirectory,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._grants: OrderedDict[str, tuple[float, KeyGrant]] = OrderedDict()

    async def find_key(self, key_sha256: str) -> KeyGrant | None:
        now = self._clock()
        cached = self._grants.get(key_sha256)
        if cached is not None and cached[0] > now:
            self._grants.move_to_end(key_sha256)
            return cached[1]
        grant = await self._directory.find_key(key_sha256)
        if grant is None or self._ttl_s <= 0:
            self._grants.pop(key_sha256, None)
            return grant
        self._grants[key_sha256] = (now + self._ttl_s, grant)
        self._grants.move_to_end(key_sha256)
        while len(self._grants) > self._max_entries:
            self._grants.popitem(last=False)
        return grant

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        revoked = await self._directory.revoke_key(tenant_id, key_id)
        for digest, (_, grant) in list(self._grants.items()):
            if grant.tenant_id == tenant_id and grant.key_id == key_id:
                del self._grants[digest]
        return revoked

    async def revoke_all_keys(self, tenant_id: str) -> int:
        revoked = await self._directory.revoke_all_keys(tenant_id)
        for digest, (_, grant) in list(self._grants.items()):
            if grant.tenant_id == tenant_id:
                del self._grants[digest]
        return revoked

    async def create_tenant(
        self, tenant_id: str, name: str, rate_limit: str | None, ip_allowlist: Sequence[IPNetwork]
    ) -> TenantRecord | None:
        return await self._directory.create_tenant(tenant_id, name, rate_limit, ip_allowlist)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        return await self._directory.get_tenant(tenant_id)

    async def create_key(
        self, tenant_id: str, key: str, name: str, scopes: Sequence[str], expires_at: datetime | None
    ) -> ApiKeyRecord:
        return await self._directory.create_key(tenant_id, key, name, scopes, expires_at)
