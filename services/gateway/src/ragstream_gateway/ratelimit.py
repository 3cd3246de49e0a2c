"""Request rate limits (moving windows) per tenant, per API key and per client address, over `limits` storages.

The store is chosen by URI (GATEWAY_RATE_LIMIT_STORAGE): `async+memory://` counts per process (local use, unit
tests); `redis://:<password>@host:6379/0` (`rediss://` for TLS; the `async+` spellings work too) is shared by
every gateway replica. A moving-window hit in Redis is one Lua script that checks and records atomically, so
N replicas together admit what one would.

What is counted, all in the same store:
- `tenant`: each authenticated request, against the tenant's `rate_limit` (or GATEWAY_DEFAULT_RATE_LIMIT);
- `key`: the same request against GATEWAY_KEY_RATE_LIMIT, so one key cannot spend its tenant's whole budget
  (both must admit it). A key window that its tenant's limit covers (a tenant window of the same length with no
  larger amount) is not counted at all: a key's requests are a subset of its tenant's, so that window could
  never refuse one the tenant's admits. With the defaults (600/minute each) a request costs one store call;
  a tenant whose limit is raised past its keys' starts counting them then;
- `address`: requests with a missing or unknown key, per client address (IPv6: per /64), against
  GATEWAY_UNKNOWN_KEY_RATE_LIMIT. An address over it is refused before its key is looked up, so guessing keys
  costs no database round trip; keys this replica has recently seen valid skip that check.

When the store fails (unreachable, or slower than GATEWAY_RATE_LIMIT_TIMEOUT_S) the decision is `unavailable`:
refused with 503 + Retry-After (fail closed, the default) or, with GATEWAY_RATE_LIMIT_FAIL_OPEN=true, admitted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from limits import RateLimitItem, parse_many
from limits.aio import storage as _async_storages  # noqa: F401  (registers the async+ schemes)
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from prometheus_client import Counter
from ragstream_common.logs import get_logger

from ragstream_gateway.problems import Problem

if TYPE_CHECKING:
    from ragstream_gateway.config import GatewaySettings

log = get_logger(__name__)
Scope = Literal["tenant", "key", "address"]

REFUSALS = Counter("ragstream_gateway_rate_limit_refusals_total", "Requests refused by a rate limit", ["scope"])
STORE_ERRORS = Counter(
    "ragstream_gateway_limit_store_errors_total",
    "Limits store (Redis) calls that failed, and what the gateway did about it",
    ["outcome"],  # refused (fail closed) | admitted (fail open) | uncounted (an unknown key's 401 went uncounted)
)
# Retry-After of a 503 while the store is down: a restarted Redis is back within a second or two.
UNAVAILABLE_RETRY_AFTER_S = 2
_REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "valkey", "valkeys")
_VALID_KEY_MEMORY_S = 300.0


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    # Whole seconds until the exhausted window admits a request again (0 when allowed).
    retry_after_s: int = 0
    limit: str = ""
    scope: Scope = "tenant"
    # The store could not be asked; `allowed` then says what GATEWAY_RATE_LIMIT_FAIL_OPEN chose.
    unavailable: bool = False


class LimitStoreUnavailable(Exception):
    """The limits store (Redis) failed and the gateway fails closed."""


@lru_cache(maxsize=1024)
def parse_limits(limit: str) -> tuple[RateLimitItem, ...]:
    """Parsed once per distinct string; raises ValueError for bad notation."""
    items = tuple(parse_many(limit))
    if not items:
        raise ValueError(f"no rate limit in {limit!r}")
    return items


@lru_cache(maxsize=1024)
def covered(spec: str, by: str) -> bool:
    """Whether every window of `spec` is implied by one of `by`'s: same length, no larger amount. Requests that
    are counted under both can then never be refused by `spec` while `by` admits them."""
    windows = parse_limits(by)
    return all(
        any(w.get_expiry() == item.get_expiry() and w.amount <= item.amount for w in windows)
        for item in parse_limits(spec)
    )


def normalise_storage_uri(uri: str) -> str:
    """limits names its async storages `async+<scheme>`; accept `async-<scheme>` and plain `redis://` too."""
    if uri.startswith("async-"):
        return "async+" + uri[len("async-") :]
    scheme = uri.partition("://")[0]
    return f"async+{uri}" if scheme in (*_REDIS_SCHEMES, "memory") else uri


def validate_limit(limit: str) -> str:
    parse_limits(limit)
    return limit


def open_storage(uri: str, timeout_s: float = 0.5) -> Storage:
    """The async storage behind `uri`; Redis connections give up after `timeout_s` (connect and each reply)."""
    normalised = normalise_storage_uri(uri)
    scheme = normalised.partition("://")[0].removeprefix("async+")
    options = {"connect_timeout": timeout_s, "stream_timeout": timeout_s} if scheme in _REDIS_SCHEMES else {}
    storage = storage_from_string(normalised, **options)
    if not isinstance(storage, Storage):
        raise ValueError(f"{uri.partition('://')[0]}:// is not an async storage")
    return storage


def address_bucket(address: str) -> str:
    """What one client address is counted as: itself (IPv4), its /64 (IPv6, where a host holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        return str(mapped) if mapped is not None else str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _RecentKeys:
    """Digests of keys this process admitted lately (bounded, time-limited): they skip the address check."""

    def __init__(self, ttl_s: float = _VALID_KEY_MEMORY_S, max_entries: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, digest: str) -> None:
        self._seen[digest] = time.monotonic() + self._ttl_s
        self._seen.move_to_end(digest)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def __contains__(self, digest: str) -> bool:
        expires = self._seen.get(digest)
        return expires is not None and expires > time.monotonic()


class TenantRateLimiter:
    def __init__(
        self,
        storage_uri: str,
        default_limit: str,
        *,
        key_limit: str | None = None,
        address_limit: str | None = None,
        fail_open: bool = False,
        timeout_s: float = 0.5,
    ) -> None:
        self.storage = open_storage(storage_uri, timeout_s)
        self._limiter = MovingWindowRateLimiter(self.storage)
        self._default = validate_limit(default_limit)
        self._key_limit = validate_limit(key_limit) if key_limit else None
        self._address_limit = validate_limit(address_limit) if address_limit else None
        self.fail_open = fail_open
        self.timeout_s = timeout_s
        self._valid_keys = _RecentKeys()

    async def check(self, tenant_id: str, limit: str | None = None) -> RateDecision:
        """Count one request of `tenant_id` against every window of its limit (or the default)."""
        spec = limit or self._default
        return await self._guarded(spec, "tenant", lambda: self._hit([("tenant", spec, tenant_id)]))

    async def admit(self, tenant_id: str, key_id: str, limit: str | None = None) -> RateDecision:
        """Count one request against its tenant's limit and its key's, only if both admit it: a key refused by
        its own limit does not spend its tenant's budget."""
        spec = limit or self._default
        windows: list[tuple[Scope, str, str]] = [("tenant", spec, tenant_id)]
        if self._key_limit is not None and not covered(self._key_limit, spec):
            windows.append(("key", self._key_limit, f"{tenant_id}/{key_id}"))
        return await self._guarded(spec, "tenant", lambda: self._hit(windows))

    async def address_refused(self, address: str, key_digest: str | None) -> RateDecision:
        """Before a key is looked up: refuse an address that used up its unknown-key budget (counts nothing)."""
        spec = self._address_limit
        if spec is None or (key_digest is not None and key_digest in self._valid_keys):
            return RateDecision(True, limit=spec or "")
        bucket = address_bucket(address)
        return await self._guarded(spec, "address", lambda: self._test(spec, "address", bucket))

    async def charge_address(self, address: str) -> None:
        """Count one missing or unknown key against its address (a failed count is only logged: it is a 401)."""
        spec = self._address_limit
        if spec is None:
            return
        bucket = address_bucket(address)
        try:
            async with asyncio.timeout(self.timeout_s):
                for item in parse_limits(spec):
                    await self._limiter.hit(item, "address", bucket)
        except Exception as exc:
            STORE_ERRORS.labels("uncounted").inc()
            log.warning("rate limit storage failed counting an unknown key", error=repr(exc))

    def remember_valid(self, key_digest: str) -> None:
        self._valid_keys.add(key_digest)

    async def _guarded(self, spec: str, scope: Scope, decide: Callable[[], Awaitable[RateDecision]]) -> RateDecision:
        try:
            async with asyncio.timeout(self.timeout_s):
                decision = await decide()
        except Exception as exc:
            STORE_ERRORS.labels("admitted" if self.fail_open else "refused").inc()
            log.warning("rate limit storage failed", error=repr(exc), scope=scope, fail_open=self.fail_open)
            return RateDecision(
                self.fail_open, retry_after_s=UNAVAILABLE_RETRY_AFTER_S, limit=spec, scope=scope, unavailable=True
            )
        if not decision.allowed:
            REFUSALS.labels(decision.scope).inc()
        return decision

    async def _hit(self, windows: list[tuple[Scope, str, str]]) -> RateDecision:
        """Test every window but the last, then count the request in the last (a hit tests and counts at once:
        a refusal there spends nothing) and in the others; the first window that refuses answers."""
        checks = [(scope, spec, identity, item) for scope, spec, identity in windows for item in parse_limits(spec)]
        *tested, last = checks
        for scope, spec, identity, item in tested:
            if not await self._limiter.test(item, scope, identity):
                return await self._refusal(item, scope, identity, spec)
        for scope, spec, identity, item in [last, *tested]:
            # Another request (or replica) may have taken the last slot of a tested window since.
            if not await self._limiter.hit(item, scope, identity):
                return await self._refusal(item, scope, identity, spec)
        return RateDecision(True, limit=windows[0][1], scope=windows[0][0])

    async def _test(self, spec: str, scope: Scope, identity: str) -> RateDecision:
        for item in parse_limits(spec):
            if not await self._limiter.test(item, scope, identity):
                return await self._refusal(item, scope, identity, spec)
        return RateDecision(True, limit=spec, scope=scope)

    async def _refusal(self, item: RateLimitItem, scope: Scope, identity: str, spec: str) -> RateDecision:
        stats = await self._limiter.get_window_stats(item, scope, identity)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateDecision(False, retry_after_s=retry_after, limit=spec, scope=scope)


def rate_limiter(settings: GatewaySettings) -> TenantRateLimiter:
    """The limiter GATEWAY_RATE_LIMIT_* and GATEWAY_*_RATE_LIMIT describe (no I/O: Redis connects on first use)."""
    return TenantRateLimiter(
        settings.rate_limit_storage.get_secret_value(),
        settings.default_rate_limit,
        key_limit=settings.key_rate_limit,
        address_limit=settings.unknown_key_rate_limit,
        fail_open=settings.rate_limit_fail_open,
        timeout_s=settings.rate_limit_timeout_s,
    )


_SUBJECTS = {"tenant": "the tenant's", "key": "the API key's", "address": "this address's unknown-key"}


def refusal_problem(decision: RateDecision) -> Problem:
    """429 for a used-up window, 503 while the store is down (fail closed); both say when to retry."""
    retry = {"Retry-After": str(decision.retry_after_s)}
    if decision.unavailable:
        return Problem(
            503,
            "rate limits cannot be checked right now; retry shortly",
            slug="rate-limit-unavailable",
            headers=retry,
            extensions={"retry_after_s": decision.retry_after_s},
        )
    return Problem(
        429,
        f"{_SUBJECTS[decision.scope]} rate limit {decision.limit} exceeded; retry in {decision.retry_after_s} s",
        slug="rate-limited",
        headers=retry,
        extensions={"retry_after_s": decision.retry_after_s, "scope": decision.scope},
    )
