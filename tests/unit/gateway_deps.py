"""Gateway dependencies for the HTTP-layer unit tests (this tier only): every port a mock, a key directory that
knows the given keys.

`gateway_deps()` builds the `GatewayDeps` the gateway's unit tests hand `create_app`; `grant()` builds what a key
admits. Tests configure the returned mocks further (`deps.registry.get.return_value = ...`) or replace a field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from unittest.mock import AsyncMock

from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.ports import KeyGrant
from ragstream_gateway.ratelimit import TenantRateLimiter
from ragstream_gateway.security import ALL_SCOPES, hash_api_key


def grant(
    tenant: str = "acme",
    scopes: tuple[str, ...] = ALL_SCOPES,
    *,
    key_id: str = "key_1",
    rate_limit: str | None = None,
    revoked: bool = False,
    expires_at: datetime | None = None,
    tenant_disabled: bool = False,
    replaced_by: str | None = None,
) -> KeyGrant:
    """A key's grant: a live key of `tenant` with `scopes` and no address allowlist unless told otherwise."""
    return KeyGrant(
        key_id,
        tenant,
        scopes,
        revoked,
        expires_at,
        rate_limit,
        (),
        tenant_disabled=tenant_disabled,
        replaced_by=replaced_by,
    )


def gateway_deps(*, grants: Mapping[str, KeyGrant] | None = None, tenants: Any = None, **overrides: Any) -> GatewayDeps:
    """Mocked ports, a directory whose `find_key` knows `grants` (raw API key -> grant) and a roomy limiter.

    `tenants` replaces that directory (then `grants` must be left out); `overrides` replace any other field.
    """
    if tenants is None:
        digests = {hash_api_key(key): key_grant for key, key_grant in (grants or {}).items()}
        tenants = AsyncMock()
        tenants.find_key.side_effect = digests.get  # an unknown key finds no grant
    elif grants is not None:
        raise ValueError("pass grants or an explicit tenants directory, not both")
    # Built only when not overridden, so a test's own limiter or registry is the one the app sees.
    defaults: dict[str, Callable[[], Any]] = {
        "registry": AsyncMock,
        "blobs": AsyncMock,
        "publisher": AsyncMock,
        "audit": AsyncMock,
        "limiter": lambda: TenantRateLimiter("async+memory://", "1000/minute"),
        "readiness": AsyncMock,
    }
    fields = {name: overrides.pop(name) if name in overrides else build() for name, build in defaults.items()}
    return GatewayDeps(tenants=tenants, **fields, **overrides)
