"""Signing keys the tests make themselves: a trusted key per minting service, plus tokens no service would
mint (expired, signed by an unknown key, forged under a trusted key id)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from ragstream_common.grpc_auth import Metadata, bearer_metadata
from ragstream_common.service_tokens import (
    Audience,
    TokenMinter,
    TokenSettings,
    TokenVerifier,
    generate_signing_key,
    jwks_json,
    load_private_key,
    public_jwk,
)

MINTERS = ("gateway", "retrieve", "generate")


@dataclass
class TokenKit:
    """One key per minting service, all trusted (kid `<service>-test`)."""

    keys: dict[str, str] = field(default_factory=lambda: {service: generate_signing_key() for service in MINTERS})

    @property
    def jwks(self) -> str:
        return jwks_json([public_jwk(pem, f"{service}-test") for service, pem in self.keys.items()])

    def settings(self, service: str) -> TokenSettings:
        """The TOKEN_* a service would get (a signing key only for minters)."""
        if service not in self.keys:
            return TokenSettings(trusted_keys=self.jwks, issuer=service)
        return TokenSettings(
            signing_key=self.keys[service], signing_key_id=f"{service}-test", trusted_keys=self.jwks, issuer=service
        )

    def minter(self, service: str = "gateway", ttl_s: int = 300) -> TokenMinter:
        return TokenMinter(load_private_key(self.keys[service]), f"{service}-test", service, ttl_s)

    def verifier(self) -> TokenVerifier:
        return self.settings("embed").verifier()

    def metadata(self, tenant: str, scopes: Sequence[str], audience: Audience | Sequence[Audience]) -> Metadata:
        """What an external caller sends after POST /v1/auth/token (minted by the gateway)."""
        return bearer_metadata(self.minter().mint(tenant, scopes, audience))

    def forged(self, key_pem: str | None = None, kid: str = "gateway-test", **claims: Any) -> str:
        """A token with the given claims over sane defaults, signed by `key_pem` (default: the gateway's key)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": "gateway",
            "sub": "key:test",
            "aud": ["embed", "retrieve", "generate", "gateway"],
            "tenant": "tenant-a",
            "scopes": ["embed", "search", "generate", "reply"],
            "iat": now,
            "exp": now + 300,
        }
        body.update(claims)
        key = load_private_key(key_pem or self.keys["gateway"])
        return jwt.encode(body, key, algorithm="EdDSA", headers={"kid": kid})

    def expired(self, **claims: Any) -> str:
        now = int(time.time())
        return self.forged(iat=now - 900, exp=now - 600, **claims)

    def unknown_key(self, **claims: Any) -> str:
        """Signed by a key nobody trusts, under a key id nobody knows."""
        return self.forged(generate_signing_key(), kid="attacker-1", **claims)

    def bad_signature(self, **claims: Any) -> str:
        """Signed by a key nobody trusts, under a trusted key id."""
        return self.forged(generate_signing_key(), kid="gateway-test", **claims)
