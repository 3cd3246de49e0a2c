"""Per-tenant request rate limits (moving window) over the `limits` library's async storages.

Storage is chosen by URI: `async+memory://` keeps counters per process (local use, tests);
`async+redis://host:6379` shares them across gateway replicas in production. The spellings
`async-memory://` and `async-redis://` are accepted too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse_many
from limits.aio import storage as _async_storages  # noqa: F401  (registers the async+ schemes)
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from ragstream_common.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    # Whole seconds until the exhausted window admits a request again (0 when allowed).
    retry_after_s: int = 0
    limit: str = ""


@lru_cache(maxsize=1024)
def parse_limits(limit: str) -> tuple[RateLimitItem, ...]:
    """Parsed once per distinct string; raises ValueError for bad notation."""
    items = tuple(parse_many(limit))
    if not items:
        raise ValueError(f"no rate limit in {limit!r}")
    return items


def normalise_storage_uri(uri: str) -> str:
    """limits names its async storages `async+<scheme>`; accept `async-<scheme>` as well."""
    return "async+" + uri[len("async-") :] if uri.startswith("async-") else uri


def validate_limit(limit: str) -> str:
    parse_limits(limit)
    return limit


class TenantRateLimiter:
    def __init__(self, storage_uri: str, default_limit: str) -> None:
        storage = storage_from_string(normalise_storage_uri(storage_uri))
        self._limiter = MovingWindowRateLimiter(storage)
        self._default = validate_limit(default_limit)

    async def check(self, tenant_id: str, limit: str | None = None) -> RateDecision:
        """Count one request of `tenant_id` against every window of its limit (or the default).

        If the storage (Redis) is unreachable requests are admitted: an outage of the limiter must not take
        the API down with it.
        """
        spec = limit or self._default
        try:
            return await self._check(tenant_id, spec)
        except Exception as exc:
            log.warning("rate limit storage failed; admitting the request", error=repr(exc), tenant_id=tenant_id)
            return RateDecision(True, limit=spec)

    async def _check(self, tenant_id: str, spec: str) -> RateDecision:
        items = parse_limits(spec)
        for item in items:
            if not await self._limiter.test(item, "tenant", tenant_id):
                return await self._refusal(item, tenant_id, spec)
        for item in items:
            # Another request may have taken the last slot between test and hit.
            if not await self._limiter.hit(item, "tenant", tenant_id):
                return await self._refusal(item, tenant_id, spec)
        return RateDecision(True, limit=spec)

    async def _refusal(self, item: RateLimitItem, tenant_id: str, spec: str) -> RateDecision:
        stats = await self._limiter.get_window_stats(item, "tenant", tenant_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateDecision(False, retry_after_s=retry_after, limit=spec)
