"""Tenant tokens for service-to-service calls: short-lived EdDSA (Ed25519) JWTs minted and verified here.

A token names who minted it (`iss`, a service), on whose behalf (`sub`: an API key or a service), the service it
is for (`aud`), the one tenant it acts for (`tenant`), what it may do (`scopes`) and when it ends (`exp`). Its
`kid` header picks the verifying key from TOKEN_TRUSTED_KEYS, a JWKS of public keys: during a rotation two
keys are trusted at once. Only services that mint (the gateway, retrieve, generate) hold a private key.
See docs/security.md (Tenant tokens on gRPC).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ALGORITHM = "EdDSA"
# What a token may do: one scope per worker RPC family (grpc_auth maps methods to them).
SCOPE_EMBED = "embed"  # EmbedService.Embed
SCOPE_SEARCH = "search"  # RetrieveService.Search
SCOPE_GENERATE = "generate"  # GenerateService.Generate
SCOPE_REPLY = "reply"  # ReplyService.* (workers answering the gateway; never minted for external callers)
SCOPES = (SCOPE_EMBED, SCOPE_SEARCH, SCOPE_GENERATE, SCOPE_REPLY)
# The services a token may be addressed to (`aud`): each verifies only tokens naming itself.
Audience = Literal["embed", "retrieve", "generate", "gateway"]
# Longer-lived tokens are refused whatever their signature: a leaked one must not outlive a rotation.
MAX_LIFETIME_S = 3600
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "iat", "exp", "tenant", "scopes"]
# Entries in a minter's or a verifier's token cache before it starts afresh (bounds memory under many tenants).
_CACHE_SIZE = 4096


class TokenSettings(BaseSettings):
    """TOKEN_*: the same variables for every service (only minters set a signing key)."""

    model_config = SettingsConfigDict(env_prefix="TOKEN_", extra="ignore", hide_input_in_errors=True)

    # PEM (PKCS#8) Ed25519 private key and the `kid` it signs under; unset: this service mints nothing.
    signing_key: SecretStr | None = None
    signing_key_id: str = Field(default="", validate_default=True)
    # JWKS JSON of the public keys every verifier trusts; unset: every token is refused.
    trusted_keys: str = ""
    ttl_s: int = Field(default=300, ge=10, le=MAX_LIFETIME_S)
    # The minting service's name (`iss`); empty: the service's own name.
    issuer: str = ""
    # Clock skew tolerated between services.
    leeway_s: float = Field(default=5.0, ge=0, le=60)

    # Field validators, not a model validator: a settings error then names its field, and the key stays masked.
    @field_validator("signing_key")
    @classmethod
    def _ed25519_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            load_private_key(value.get_secret_value())
        return value

    @field_validator("signing_key_id")
    @classmethod
    def _key_has_an_id(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("signing_key") is not None and not value:
            raise ValueError("TOKEN_SIGNING_KEY_ID must name the signing key")
        return value

    @field_validator("trusted_keys")
    @classmethod
    def _valid_jwks(cls, value: str) -> str:
        parse_jwks(value)
        return value

    def minter(self, default_issuer: str) -> TokenMinter | None:
        """The minter for this service, or None when it holds no signing key."""
        if self.signing_key is None:
            return None
        return TokenMinter(
            load_private_key(self.signing_key.get_secret_value()),
            self.signing_key_id,
            self.issuer or default_issuer,
            self.ttl_s,
        )

    def required_minter(self, service: str) -> TokenMinter:
        """The minter of a service that cannot work without one (its calls need tokens)."""
        minter = self.minter(service)
        if minter is None:
            raise ValueError(f"{service} mints tokens for its calls: set TOKEN_SIGNING_KEY and TOKEN_SIGNING_KEY_ID")
        return minter

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(parse_jwks(self.trusted_keys), leeway_s=self.leeway_s)


class TokenError(Exception):
    """A token that does not admit the call. `reason` is a bounded metric label; `denied` tells a valid
    identity without the right (PERMISSION_DENIED) from no valid identity at all (UNAUTHENTICATED)."""

    reason: ClassVar[str] = "invalid"
    denied: ClassVar[bool] = False


class MissingToken(TokenError):
    reason = "missing"


class MalformedToken(TokenError):
    reason = "malformed"


class ExpiredToken(TokenError):
    reason = "expired"


class BadSignature(TokenError):
    reason = "bad_signature"


class UnknownKey(TokenError):
    reason = "unknown_key"


class WrongAudience(TokenError):
    reason = "wrong_audience"
    denied = True


class WrongScope(TokenError):
    reason = "wrong_scope"
    denied = True


@dataclass(frozen=True)
class VerifiedToken:
    tenant: str
    scopes: tuple[str, ...]
    issuer: str
    subject: str
    expires_at: float = 0.0


class TokenMinter:
    def __init__(self, key: Ed25519PrivateKey, key_id: str, issuer: str, ttl_s: int = 300) -> None:
        if not key_id or not issuer:
            raise ValueError("a minter needs a key id and an issuer")
        self._key = key
        self.key_id = key_id
        self.issuer = issuer
        self.ttl_s = ttl_s
        # Tokens in use by (tenant, scopes, audience, subject) and when to stop handing them out.
        self._reusable: dict[tuple[str, tuple[str, ...], tuple[str, ...], str], tuple[float, str]] = {}

    def mint(
        self,
        tenant: str,
        scopes: Sequence[str],
        audience: Audience | Sequence[Audience],
        subject: str = "",
        *,
        fresh: bool = False,
    ) -> str:
        """A token for `tenant` valid at least half of `ttl_s` from now; `subject` defaults to this service (the
        issuer). The same claims get the same token until half its lifetime is spent, so a service's many calls
        cost one signature and the callee verifies it once (TokenVerifier keeps what it verified). `fresh`: a
        new token valid the whole `ttl_s` (tokens handed to external callers, who are told that lifetime)."""
        key = (tenant, tuple(scopes), (audience,) if isinstance(audience, str) else tuple(audience), subject)
        reusable = None if fresh else self._reusable.get(key)
        if reusable is not None and reusable[0] > time.time():
            return reusable[1]
        token = self._signed(tenant, scopes, audience, subject)
        if len(self._reusable) >= _CACHE_SIZE:
            self._reusable.clear()
        self._reusable[key] = (time.time() + self.ttl_s / 2, token)
        return token

    def _signed(self, tenant: str, scopes: Sequence[str], audience: Audience | Sequence[Audience], subject: str) -> str:
        if not tenant:
            raise ValueError("a token must name its tenant")
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ValueError(f"scopes must be some of {SCOPES}, got {sorted(scopes)}")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject or self.issuer,
            "aud": audience if isinstance(audience, str) else list(audience),
            "tenant": tenant,
            "scopes": list(scopes),
            "iat": now,
            "exp": now + self.ttl_s,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.key_id})


class TokenVerifier:
    """Checks tokens against trusted public keys (by `kid`); holds no private key."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey], leeway_s: float = 5.0) -> None:
        self._keys = dict(keys)
        self._leeway_s = leeway_s
        # Tokens whose signature verified, by (token, audience): a signature stays valid, so only the expiry and
        # the scope are checked again (the keys are fixed for this verifier's life).
        self._verified: dict[tuple[str, str], VerifiedToken] = {}

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, token: str | None, audience: Audience, required_scope: str) -> VerifiedToken:
        if not token:
            raise MissingToken("no bearer token")
        verified = self._verified.get((token, audience))
        if verified is None:
            verified = self._verify_signed(token, audience)
            if len(self._verified) >= _CACHE_SIZE:
                self._verified.clear()
            self._verified[(token, audience)] = verified
        elif time.time() > verified.expires_at + self._leeway_s:
            del self._verified[(token, audience)]
            raise ExpiredToken("the token has expired")
        if required_scope not in verified.scopes:
            raise WrongScope(f"the token lacks the {required_scope!r} scope")
        return verified

    def _verify_signed(self, token: str, audience: Audience) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise MalformedToken(f"not a JWT: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise MalformedToken(f"algorithm {header.get('alg')!r} is not {ALGORITHM}")
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise UnknownKey(f"signing key {str(header.get('kid', ''))[:64]!r} is not trusted")
        claims = self._decode(token, key, audience)
        scopes = claims["scopes"]
        tenant = claims["tenant"]
        if not (isinstance(tenant, str) and tenant) or not _strings(scopes):
            raise MalformedToken("tenant must be a non-empty string and scopes a list of strings")
        if claims["exp"] - claims["iat"] > MAX_LIFETIME_S:
            raise MalformedToken(f"lifetime over {MAX_LIFETIME_S} s")
        return VerifiedToken(tenant, tuple(scopes), str(claims["iss"]), str(claims["sub"]), float(claims["exp"]))

    def _decode(self, token: str, key: Ed25519PublicKey, audience: Audience) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                leeway=self._leeway_s,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise ExpiredToken("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise BadSignature("the token's signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise WrongAudience(f"the token is not addressed to {audience!r}") from None
        except jwt.PyJWTError as exc:
            raise MalformedToken(str(exc)) from None


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `authorization: Bearer <token>` value; None for anything else."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


# Keys: generation, PEM and JWKS. The devstack and tests make keys here; deployments bring their own.


def generate_signing_key() -> str:
    """A new Ed25519 private key as PKCS#8 PEM."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode("ascii")


def load_private_key(pem: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError("TOKEN_SIGNING_KEY is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("TOKEN_SIGNING_KEY must be an Ed25519 private key")
    return key


def public_jwk(private_pem: str, key_id: str) -> dict[str, str]:
    """The public half of a signing key as a JWK (what goes into TOKEN_TRUSTED_KEYS)."""
    jwk = OKPAlgorithm.to_jwk(load_private_key(private_pem).public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    return {**jwk, "kid": key_id, "alg": ALGORITHM, "use": "sig"}


def jwks_json(keys: Sequence[Mapping[str, str]]) -> str:
    return json.dumps({"keys": list(keys)}, separators=(",", ":"), sort_keys=True)


def parse_jwks(text: str) -> dict[str, Ed25519PublicKey]:
    """Public Ed25519 keys by `kid`; a private key, another key type or a duplicate `kid` is an error."""
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TOKEN_TRUSTED_KEYS is not JSON: {exc.msg}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('TOKEN_TRUSTED_KEYS must be a JWKS: {"keys": [...]}')
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            raise ValueError("TOKEN_TRUSTED_KEYS holds Ed25519 keys only (kty OKP, crv Ed25519)")
        if "d" in entry:
            raise ValueError("TOKEN_TRUSTED_KEYS must hold public keys only (a key has a private part 'd')")
        key_id = entry.get("kid")
        if not isinstance(key_id, str) or not key_id or key_id in keys:
            raise ValueError("every key in TOKEN_TRUSTED_KEYS needs a unique 'kid'")
        key = OKPAlgorithm.from_jwk(entry)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"key {key_id!r} is not an Ed25519 public key")
        keys[key_id] = key
    return keys
