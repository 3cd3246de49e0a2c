"""API keys and client addresses: parsing, hashing, generation and allowlist checks (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping, Sequence

KEY_PREFIX = "rsk_"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCOPE_DOCUMENTS_WRITE = "documents:write"
SCOPE_DOCUMENTS_READ = "documents:read"
SCOPE_QUERY = "query"
# The tenant's connectors (docs/connectors.md): create, inspect, resync, remove, rotate their secrets.
SCOPE_CONNECTORS_ADMIN = "connectors:admin"
# Every scope a tenant key can hold; keys created without a scope list (and the dev key) hold them all.
ALL_SCOPES = (SCOPE_DOCUMENTS_WRITE, SCOPE_DOCUMENTS_READ, SCOPE_QUERY, SCOPE_CONNECTORS_ADMIN)

# Admin API keys are keys of this reserved tenant carrying exactly SCOPE_ADMIN (migration 0006 enforces both
# ways); tenant ids starting with "_" are reserved for the platform and never created through the API.
SCOPE_ADMIN = "admin"
PLATFORM_TENANT = "_platform"
RESERVED_TENANT_PREFIX = "_"
# The bootstrap admin token (GATEWAY_ADMIN_TOKEN) acts as this actor; admin keys as `admin:<key_id>`.
BOOTSTRAP_ACTOR = "admin"
ADMIN_TOKEN_MIN_LENGTH = 32


def admin_actor(key_id: str) -> str:
    return f"{BOOTSTRAP_ACTOR}:{key_id}"


def reserved_tenant(tenant_id: str) -> bool:
    return tenant_id.startswith(RESERVED_TENANT_PREFIX)


def extract_api_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer <key>`, else from `X-API-Key`; None when neither holds one.

    `headers` must look names up case-insensitively (Starlette's Headers do).
    """
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    header_key = headers.get("x-api-key", "").strip()
    return header_key or None


def hash_api_key(key: str) -> str:
    """Keys are random and long, so a plain SHA-256 (no salt, no stretching) is enough to store them."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def key_preview(key: str) -> str:
    """Enough of a key to tell keys apart in listings, never enough to use it."""
    return key[: len(KEY_PREFIX) + 4]


def tokens_match(presented: str | None, expected: str) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def address_allowed(client_ip: str, allowlist: Sequence[IPNetwork]) -> bool:
    """An empty allowlist admits every address; an unparsable address is never admitted by a non-empty one."""
    if not allowlist:
        return True
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in allowlist)
