"""API key grants held in memory for a few seconds, so a request does not wait on Postgres to authenticate.

Changes are pushed: every change to a key's validity or to a tenant is NOTIFYed by Postgres in the changing
transaction (migration 0006), and the listener (key_events_pg.py) evicts the affected grants here, on every
gateway replica, within milliseconds of the commit. While the listener is not connected, notifications may be
missed, so grants then live at most `fallback_ttl_s` (1 s by default) and the cache is emptied when it connects
again. Revoking a key through this instance drops it at once either way. Unknown keys are never cached, so a key
created anywhere works on its first request everywhere. Expiry, and so the end of a rotation's grace period, is
checked at each use (`KeyGrant.expired`).

A lookup that was in flight when an event arrived is answered but not cached: it may predate the change.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime

from ragstream_gateway.ports import (
    ApiKeyListing,
    ApiKeyRecord,
    AuditEntry,
    AuditFor,
    KeyGrant,
    RotatedKey,
    TenantDirectory,
    TenantListing,
    TenantRecord,
    TenantUpdate,
)
from ragstream_gateway.security import IPNetwork


class CachedTenantDirectory:
    """A `TenantDirectory` whose `find_key` and `tenant_disabled` answer from a bounded, time-limited cache.

    `fallback_ttl_s` None: no change events are expected (entries live `ttl_s`); otherwise entries live `ttl_s`
    while `listening(True)` holds and at most `fallback_ttl_s` before the listener connects or after it is lost.
    """

    def __init__(
        self,
        directory: TenantDirectory,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        fallback_ttl_s: float | None = None,
    ) -> None:
        self._directory = directory
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._fallback_ttl_s = fallback_ttl_s
        self._listening = fallback_ttl_s is None
        # Bumped by every eviction: a lookup that started before it must not cache what it found.
        self._generation = 0
        self._grants: OrderedDict[str, tuple[float, KeyGrant]] = OrderedDict()
        self._disabled: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    @property
    def ttl_s(self) -> float:
        if self._listening or self._fallback_ttl_s is None:
            return self._ttl_s
        return min(self._ttl_s, self._fallback_ttl_s)

    async def find_key(self, key_sha256: str) -> KeyGrant | None:
        now = self._clock()
        cached = self._grants.get(key_sha256)
        if cached is not None and cached[0] > now:
            self._grants.move_to_end(key_sha256)
            return cached[1]
        generation = self._generation
        grant = await self._directory.find_key(key_sha256)
        if grant is None or self.ttl_s <= 0 or generation != self._generation:
            self._grants.pop(key_sha256, None)
            return grant
        self._grants[key_sha256] = (now + self.ttl_s, grant)
        self._grants.move_to_end(key_sha256)
        while len(self._grants) > self._max_entries:
            self._grants.popitem(last=False)
        return grant

    async def tenant_disabled(self, tenant_id: str) -> bool:
        now = self._clock()
        cached = self._disabled.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self._generation
        disabled = await self._directory.tenant_disabled(tenant_id)
        if self.ttl_s > 0 and generation == self._generation:
            self._disabled[tenant_id] = (now + self.ttl_s, disabled)
            while len(self._disabled) > self._max_entries:
                self._disabled.popitem(last=False)
        return disabled

    # Change events (key_events_pg.KeyEventListener calls these).

    def key_changed(self, tenant_id: str, key_id: str) -> None:
        self._generation += 1
        for digest, (_, grant) in list(self._grants.items()):
            if grant.tenant_id == tenant_id and grant.key_id == key_id:
                del self._grants[digest]

    def tenant_changed(self, tenant_id: str) -> None:
        self._generation += 1
        self._disabled.pop(tenant_id, None)
        for digest, (_, grant) in list(self._grants.items()):
            if grant.tenant_id == tenant_id:
                del self._grants[digest]

    def listening(self, connected: bool) -> None:
        """The listener connected (or lost its connection): what was cached may have missed events either way."""
        self._listening = connected or self._fallback_ttl_s is None
        self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._grants.clear()
        self._disabled.clear()

    # Writes: forwarded (with their audit entries, appended in the write's transaction), and this instance's own
    # entries dropped at once (the other replicas hear the NOTIFY).

    async def revoke_key(self, tenant_id: str, key_id: str, *, audit: AuditEntry | None = None) -> bool:
        revoked = await self._directory.revoke_key(tenant_id, key_id, audit=audit)
        self.key_changed(tenant_id, key_id)
        return revoked

    async def revoke_all_keys(self, tenant_id: str, *, audit: AuditFor[int] | None = None) -> int:
        revoked = await self._directory.revoke_all_keys(tenant_id, audit=audit)
        self.tenant_changed(tenant_id)
        return revoked

    async def rotate_key(
        self,
        tenant_id: str,
        key_id: str,
        key: str,
        grace_s: int,
        expires_at: datetime | None,
        *,
        audit: AuditFor[RotatedKey] | None = None,
    ) -> RotatedKey | None:
        rotated = await self._directory.rotate_key(tenant_id, key_id, key, grace_s, expires_at, audit=audit)
        self.key_changed(tenant_id, key_id)
        return rotated

    async def update_tenant(
        self, tenant_id: str, update: TenantUpdate, *, audit: AuditFor[TenantRecord] | None = None
    ) -> TenantRecord | None:
        record = await self._directory.update_tenant(tenant_id, update, audit=audit)
        self.tenant_changed(tenant_id)
        return record

    async def create_tenant(
        self,
        tenant_id: str,
        name: str,
        rate_limit: str | None,
        ip_allowlist: Sequence[IPNetwork],
        *,
        audit: AuditFor[TenantRecord] | None = None,
    ) -> TenantRecord | None:
        return await self._directory.create_tenant(tenant_id, name, rate_limit, ip_allowlist, audit=audit)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        return await self._directory.get_tenant(tenant_id)

    async def list_tenants(self, *, limit: int, cursor: str | None, include_deleted: bool) -> TenantListing:
        return await self._directory.list_tenants(limit=limit, cursor=cursor, include_deleted=include_deleted)

    async def create_key(
        self,
        tenant_id: str,
        key: str,
        name: str,
        scopes: Sequence[str],
        expires_at: datetime | None,
        *,
        audit: AuditFor[ApiKeyRecord] | None = None,
    ) -> ApiKeyRecord:
        return await self._directory.create_key(tenant_id, key, name, scopes, expires_at, audit=audit)

    async def list_keys(self, tenant_id: str, *, limit: int, cursor: str | None) -> ApiKeyListing:
        return await self._directory.list_keys(tenant_id, limit=limit, cursor=cursor)
