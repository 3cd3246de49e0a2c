"""Per-tenant quotas: live documents, stored bytes, and questions per UTC day.

Defaults come from the settings (GATEWAY_QUOTA_*, None: no limit); a tenant's overrides (table `tenant_quotas`,
set through `QuotaEnforcer.set_quotas`) replace them field by field. A refusal is `QuotaExceeded` (429
`quota-exceeded` naming the quota, its limit and what is used).

- Documents and bytes are counted from the document registry (live rows and the size of their current
  version), so they are exact and survive any restart. An upload is refused only when it would grow what is
  counted past a limit: a new version that is not larger, and an identical re-upload (which registers nothing),
  always pass, even over a lowered quota. The check runs twice: before the content is stored (no orphan blob
  for a refused upload) and again, under a per-tenant lock in the limits store, right before the version is
  registered (quota_registry.py), so concurrent uploads on any replica cannot overshoot together.
- Questions are a counter per tenant and UTC day in the limits store (Redis), incremented per question
  (POST /v1/query and /v1/search, whatever their outcome) and given back when refused; refusals say how many
  seconds remain until the day ends (Retry-After).
When the limits store fails, quotas follow GATEWAY_RATE_LIMIT_FAIL_OPEN like the rate limits do.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from limits.aio.storage import MovingWindowSupport, Storage
from prometheus_client import Counter
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from ragstream_common.logs import get_logger

from ragstream_gateway.ports import DocumentRecord, QuotaStore, StoredUsage, TenantQuotas
from ragstream_gateway.ratelimit import STORE_ERRORS, LimitStoreUnavailable, TenantRateLimiter

if TYPE_CHECKING:
    from ragstream_gateway.config import GatewaySettings

log = get_logger(__name__)
T = TypeVar("T")
GIB = 1024**3
QUOTA_NAMES = ("documents", "stored_bytes", "questions_per_day")
REFUSED = Counter("ragstream_gateway_quota_refusals_total", "Requests refused by a tenant quota", ["quota"])
# A day's question counter outlives its day a little (clock skew between replicas), then expires.
_DAY_KEY_TTL_S = 2 * 86_400
# The upload lock is held for a registry read and one registration: milliseconds. It expires on its own should
# its holder die; a waiter gives up (503) after slightly longer.
_LOCK_TTL_S = 10
_LOCK_WAIT_S = 11.0
_LOCK_POLL_S = 0.01


class QuotaSettings(BaseSettings):
    """GATEWAY_QUOTA_MAX_DOCUMENTS, _MAX_STORED_BYTES, _MAX_QUESTIONS_PER_DAY (empty or `none`: no limit) and
    _CACHE_TTL_S (how long a replica reuses a tenant's quotas before reading them again)."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_QUOTA_", extra="ignore")

    max_documents: int | None = Field(default=100_000, ge=0)
    max_stored_bytes: int | None = Field(default=10 * GIB, ge=0)
    max_questions_per_day: int | None = Field(default=100_000, ge=0)
    cache_ttl_s: float = Field(default=5.0, ge=0, le=300)

    @field_validator("max_documents", "max_stored_bytes", "max_questions_per_day", mode="before")
    @classmethod
    def _empty_is_no_limit(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    def defaults(self) -> TenantQuotas:
        return TenantQuotas(self.max_documents, self.max_stored_bytes, self.max_questions_per_day)


class QuotaExceeded(Exception):
    def __init__(self, quota: str, limit: int, used: int, retry_after_s: int | None = None) -> None:
        super().__init__(f"the tenant's {quota} quota ({limit}) is used up ({used} used)")
        self.quota, self.limit, self.used, self.retry_after_s = quota, limit, used, retry_after_s


@dataclass(frozen=True)
class QuotaUsage:
    quota: str
    limit: int | None
    used: int
    # True when the limit is the tenant's own, False when it is the default.
    overridden: bool


@dataclass(frozen=True)
class UsageReport:
    tenant_id: str
    day: date
    quotas: tuple[QuotaUsage, ...]


def effective_quotas(overrides: TenantQuotas, defaults: TenantQuotas) -> TenantQuotas:
    values = {
        f.name: getattr(overrides, f.name) if getattr(overrides, f.name) is not None else getattr(defaults, f.name)
        for f in fields(TenantQuotas)
    }
    return TenantQuotas(**values)


def upload_growth(current: DocumentRecord | None, size_bytes: int) -> tuple[int, int]:
    """How much an upload of `size_bytes` adds to the live documents and stored bytes counted for its tenant."""
    if current is None or current.status == "deleted":
        return 1, size_bytes
    return 0, size_bytes - current.size_bytes


class QuotaEnforcer:
    """Quotas of every tenant: the store's overrides over `settings`' defaults, counters in `counters`."""

    def __init__(
        self,
        store: QuotaStore,
        counters: Storage,
        settings: QuotaSettings,
        *,
        fail_open: bool = False,
        timeout_s: float = 0.5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(counters, MovingWindowSupport):
            raise ValueError(f"{type(counters).__name__} has no moving windows, which the upload lock needs")
        self._store = store
        self._counters = counters
        self._windows: MovingWindowSupport = counters
        self._defaults = settings.defaults()
        self._ttl_s = settings.cache_ttl_s
        self._fail_open = fail_open
        self._timeout_s = timeout_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, TenantQuotas]] = OrderedDict()

    @property
    def store(self) -> QuotaStore:
        return self._store

    async def effective(self, tenant_id: str) -> TenantQuotas:
        """The quotas in force for the tenant (None: no limit), reused for GATEWAY_QUOTA_CACHE_TTL_S."""
        now = time.monotonic()
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        quotas = effective_quotas(await self._store.overrides(tenant_id), self._defaults)
        self._cache[tenant_id] = (now + self._ttl_s, quotas)
        self._cache.move_to_end(tenant_id)
        while len(self._cache) > 10_000:
            self._cache.popitem(last=False)
        return quotas

    async def overrides(self, tenant_id: str) -> TenantQuotas:
        return await self._store.overrides(tenant_id)

    async def set_quotas(self, tenant_id: str, quotas: TenantQuotas) -> TenantQuotas:
        """Replace the tenant's overrides (None fields: the default); LookupError for an unknown tenant. Other
        replicas apply them within GATEWAY_QUOTA_CACHE_TTL_S."""
        stored = await self._store.set_overrides(tenant_id, quotas)
        self._cache.pop(tenant_id, None)
        return stored

    def limits_uploads(self, quotas: TenantQuotas) -> bool:
        return quotas.max_documents is not None or quotas.max_stored_bytes is not None

    async def check_upload(self, tenant_id: str, current: DocumentRecord | None, size_bytes: int) -> None:
        """Raise QuotaExceeded when storing this upload would take the tenant past a document or byte quota."""
        quotas = await self.effective(tenant_id)
        more_documents, more_bytes = upload_growth(current, size_bytes)
        checks = [
            ("documents", quotas.max_documents, more_documents),
            ("stored_bytes", quotas.max_stored_bytes, more_bytes),
        ]
        if all(limit is None or growth <= 0 for _, limit, growth in checks):
            return
        usage = await self._store.usage(tenant_id)
        used = {"documents": usage.documents, "stored_bytes": usage.stored_bytes}
        for quota, limit, growth in checks:
            if limit is not None and growth > 0 and used[quota] + growth > limit:
                REFUSED.labels(quota).inc()
                raise QuotaExceeded(quota, limit, used[quota])

    @asynccontextmanager
    async def upload_lock(self, tenant_id: str) -> AsyncIterator[None]:
        """Hold the tenant's upload lock (in the limits store, so across replicas) for a check and a write.

        Failing open, a store that cannot be asked (or a lock that stays taken) lets the upload go unlocked."""
        key = f"quota-lock/{tenant_id}"
        acquired = await self._acquire(key)
        try:
            yield
        finally:
            if acquired:
                try:
                    await self._store_call(self._counters.clear(key))
                except LimitStoreUnavailable:
                    pass  # it expires on its own within _LOCK_TTL_S

    async def charge_question(self, tenant_id: str) -> None:
        """Count one question of the tenant today; QuotaExceeded (nothing counted) past its daily quota."""
        limit = (await self.effective(tenant_id)).max_questions_per_day
        if limit is None:
            return
        key = self._day_key(tenant_id)
        used = await self._store_call(self._counters.incr(key, _DAY_KEY_TTL_S))
        if used is None or used <= limit:
            return
        await self._store_call(self._counters.incr(key, _DAY_KEY_TTL_S, -1))
        REFUSED.labels("questions_per_day").inc()
        raise QuotaExceeded("questions_per_day", limit, used - 1, retry_after_s=self._seconds_to_midnight())

    async def usage(self, tenant_id: str) -> UsageReport:
        """Every quota of the tenant with its limit and what is used (questions: today, UTC)."""
        overrides = await self._store.overrides(tenant_id)
        quotas = effective_quotas(overrides, self._defaults)
        stored = await self._store.usage(tenant_id)
        questions = await self._store_call(self._counters.get(self._day_key(tenant_id)))
        return UsageReport(tenant_id, self._clock().date(), _report(quotas, overrides, stored, questions or 0))

    async def _acquire(self, key: str) -> bool:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            acquired = await self._store_call(self._windows.acquire_entry(key, 1, _LOCK_TTL_S))
            if acquired is None:
                return False  # failing open
            if acquired:
                return True
            if time.monotonic() > deadline:
                self._store_failed(TimeoutError(f"{key} stayed taken for {_LOCK_WAIT_S} s"))
                return False
            await asyncio.sleep(_LOCK_POLL_S)

    async def _store_call(self, call: Awaitable[T]) -> T | None:
        """`call` within the store timeout; if the store fails: None (fail open) or LimitStoreUnavailable."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except Exception as exc:
            self._store_failed(exc)
            return None

    def _store_failed(self, exc: Exception) -> None:
        STORE_ERRORS.labels("admitted" if self._fail_open else "refused").inc()
        log.warning("quota counter storage failed", error=repr(exc), fail_open=self._fail_open)
        if not self._fail_open:
            raise LimitStoreUnavailable(str(exc)) from exc

    def _day_key(self, tenant_id: str) -> str:
        return f"quota/questions/{tenant_id}/{self._clock().date().isoformat()}"

    def _seconds_to_midnight(self) -> int:
        now = self._clock()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        return max(1, int((midnight - now).total_seconds()))


def quota_enforcer(settings: GatewaySettings, store: QuotaStore, limiter: TenantRateLimiter) -> QuotaEnforcer:
    """Quotas over `store`, counting in the limiter's store and failing like it does."""
    return QuotaEnforcer(
        store,
        limiter.storage,
        settings.quotas,
        fail_open=settings.rate_limit_fail_open,
        timeout_s=settings.rate_limit_timeout_s,
    )


def _report(
    quotas: TenantQuotas, overrides: TenantQuotas, stored: StoredUsage, questions: int
) -> tuple[QuotaUsage, ...]:
    used = (stored.documents, stored.stored_bytes, questions)
    return tuple(
        QuotaUsage(name, getattr(quotas, f.name), count, getattr(overrides, f.name) is not None)
        for name, f, count in zip(QUOTA_NAMES, fields(TenantQuotas), used, strict=True)
    )
