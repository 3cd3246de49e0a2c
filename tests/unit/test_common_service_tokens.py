"""Service tokens: what a minter writes, what a verifier accepts, and the distinct reason for each refusal."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from pydantic import ValidationError
from ragstream_common.service_tokens import (
    BadSignature,
    ExpiredToken,
    MalformedToken,
    MissingToken,
    TokenSettings,
    UnknownKey,
    VerifiedToken,
    WrongAudience,
    WrongScope,
    bearer_token,
    generate_signing_key,
    jwks_json,
    parse_jwks,
    public_jwk,
)
from support.tokens import TokenKit

pytestmark = pytest.mark.unit


def kit_now() -> int:
    return int(time.time())


@pytest.fixture(scope="module")
def kit() -> TokenKit:
    return TokenKit()


def test_a_minted_token_verifies_with_its_tenant_scopes_issuer_and_subject(kit: TokenKit) -> None:
    token = kit.minter("gateway").mint("acme", ["search", "embed"], ["retrieve", "embed"], subject="key:k1")
    verified = kit.verifier().verify(token, "retrieve", "search")
    assert verified == VerifiedToken("acme", ("search", "embed"), "gateway", "key:k1", verified.expires_at)
    assert kit.verifier().verify(token, "embed", "embed").tenant == "acme"
    # A service's own token names it as the subject.
    assert kit.verifier().verify(
        kit.minter("retrieve").mint("acme", ["reply"], "gateway"), "gateway", "reply"
    ).subject == ("retrieve")


@pytest.mark.parametrize(
    ("token", "error", "denied"),
    [
        (lambda kit: None, MissingToken, False),
        (lambda kit: "", MissingToken, False),
        (lambda kit: "not-a-jwt", MalformedToken, False),
        (lambda kit: kit.expired(), ExpiredToken, False),
        (lambda kit: kit.unknown_key(), UnknownKey, False),
        (lambda kit: kit.bad_signature(), BadSignature, False),
        (lambda kit: kit.forged(aud="generate"), WrongAudience, True),
        (lambda kit: kit.forged(scopes=["embed"]), WrongScope, True),
        (lambda kit: kit.forged(tenant=""), MalformedToken, False),
        (lambda kit: kit.forged(scopes="search"), MalformedToken, False),
        (lambda kit: kit.forged(exp=kit_now() + 7200), MalformedToken, False),
    ],
    ids=[
        "none",
        "empty",
        "garbage",
        "expired",
        "unknown-kid",
        "bad-signature",
        "audience",
        "scope",
        "no-tenant",
        "scopes-not-a-list",
        "too-long-lived",
    ],
)
def test_each_refusal_has_its_own_error(kit: TokenKit, token: object, error: type[Exception], denied: bool) -> None:
    with pytest.raises(error) as raised:
        kit.verifier().verify(token(kit), "retrieve", "search")  # type: ignore[operator]
    assert raised.value.denied is denied  # type: ignore[attr-defined]


def test_a_token_without_a_required_claim_or_with_another_algorithm_is_malformed(kit: TokenKit) -> None:
    claims = {"iss": "gateway", "aud": "retrieve", "tenant": "a", "scopes": ["search"], "iat": kit_now()}
    no_expiry = jwt.encode(
        {**claims, "sub": "x"}, kit.keys["gateway"], algorithm="EdDSA", headers={"kid": "gateway-test"}
    )
    with pytest.raises(MalformedToken):
        kit.verifier().verify(no_expiry, "retrieve", "search")
    hmac = jwt.encode(
        {**claims, "exp": kit_now() + 60}, "secret-" * 6, algorithm="HS256", headers={"kid": "gateway-test"}
    )
    with pytest.raises(MalformedToken):
        kit.verifier().verify(hmac, "retrieve", "search")


def test_rotation_two_trusted_keys_verify_and_a_retired_one_does_not() -> None:
    old, new = generate_signing_key(), generate_signing_key()
    both = jwks_json([public_jwk(old, "gw-1"), public_jwk(new, "gw-2")])
    minted_old = TokenSettings(signing_key=old, signing_key_id="gw-1", trusted_keys=both).required_minter("gateway")
    minted_new = TokenSettings(signing_key=new, signing_key_id="gw-2", trusted_keys=both).required_minter("gateway")
    during = TokenSettings(trusted_keys=both).verifier()
    for minter in (minted_old, minted_new):
        assert during.verify(minter.mint("a", ["search"], "retrieve"), "retrieve", "search").tenant == "a"
    after = TokenSettings(trusted_keys=jwks_json([public_jwk(new, "gw-2")])).verifier()
    with pytest.raises(UnknownKey):
        after.verify(minted_old.mint("a", ["search"], "retrieve"), "retrieve", "search")


def test_settings_refuse_private_keys_in_the_jwks_and_a_key_without_an_id() -> None:
    pem = generate_signing_key()
    private = json.loads(jwks_json([public_jwk(pem, "k1")]))
    private["keys"][0]["d"] = "c2VjcmV0"
    for bad in (json.dumps(private), '{"keys": [{"kty": "RSA", "kid": "r"}]}', "[]", "{not json", _duplicate(pem)):
        with pytest.raises(ValidationError):
            TokenSettings(trusted_keys=bad)
    with pytest.raises(ValidationError):
        TokenSettings(signing_key=pem)
    with pytest.raises(ValidationError) as raised:
        TokenSettings(signing_key="-----BEGIN PRIVATE KEY----- not-a-key", signing_key_id="k1")
    assert "not-a-key" not in str(raised.value)
    assert TokenSettings().minter("embed") is None and TokenSettings().verifier().key_ids == []
    with pytest.raises(ValueError, match="TOKEN_SIGNING_KEY"):
        TokenSettings().required_minter("retrieve")
    assert parse_jwks("") == {}


def _duplicate(pem: str) -> str:
    return jwks_json([public_jwk(pem, "same"), public_jwk(generate_signing_key(), "same")])


def test_settings_read_the_environment_and_never_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    pem = generate_signing_key()
    monkeypatch.setenv("TOKEN_SIGNING_KEY", pem)
    monkeypatch.setenv("TOKEN_SIGNING_KEY_ID", "gw-1")
    monkeypatch.setenv("TOKEN_TRUSTED_KEYS", jwks_json([public_jwk(pem, "gw-1")]))
    monkeypatch.setenv("TOKEN_TTL_S", "60")
    settings = TokenSettings()
    assert "PRIVATE" not in repr(settings) and "PRIVATE" not in str(settings.model_dump())
    minter = settings.required_minter("gateway")
    assert minter.issuer == "gateway" and minter.ttl_s == 60
    verified = settings.verifier().verify(minter.mint("t", ["reply"], "gateway"), "gateway", "reply")
    assert verified.expires_at - kit_now() <= 60


def test_minting_refuses_no_tenant_and_unknown_scopes(kit: TokenKit) -> None:
    minter = kit.minter()
    for tenant, scopes in (("", ["search"]), ("a", ["admin"]), ("a", [])):
        with pytest.raises(ValueError):
            minter.mint(tenant, scopes, "retrieve")


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), ("", None), (None, None)],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_a_minter_hands_out_one_token_per_claims_until_half_its_lifetime(kit: TokenKit) -> None:
    minter = kit.minter("retrieve", ttl_s=60)
    first = minter.mint("acme", ["embed"], "embed")
    assert minter.mint("acme", ["embed"], "embed") == first
    assert minter.mint("other", ["embed"], "embed") != first
    assert minter.mint("acme", ["embed"], "embed", subject="key:k1") != first
    expires = jwt.decode(first, options={"verify_signature": False})["exp"]
    assert expires - kit_now() >= 30  # a reused token still has at least half of its lifetime left


def test_a_fresh_token_is_valid_its_whole_lifetime(kit: TokenKit) -> None:
    minter = kit.minter("gateway", ttl_s=120)
    minter.mint("acme", ["search"], "retrieve")
    claims = jwt.decode(minter.mint("acme", ["search"], "retrieve", fresh=True), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120
    assert claims["iat"] >= kit_now() - 1


def test_a_verified_token_is_checked_again_for_expiry_scope_and_audience(kit: TokenKit) -> None:
    verifier = TokenSettings(trusted_keys=kit.jwks, leeway_s=0).verifier()
    now = kit_now()
    token = kit.forged(iat=now, exp=now + 2, scopes=["search"])
    assert verifier.verify(token, "retrieve", "search").tenant == "tenant-a"
    assert verifier.verify(token, "retrieve", "search").tenant == "tenant-a"  # from what it verified before
    with pytest.raises(WrongScope):
        verifier.verify(token, "retrieve", "embed")
    for_retrieve = kit.forged(aud="retrieve")
    assert verifier.verify(for_retrieve, "retrieve", "search").tenant == "tenant-a"
    with pytest.raises(WrongAudience):
        verifier.verify(for_retrieve, "generate", "search")
    time.sleep(max(0.0, now + 2.05 - time.time()))
    with pytest.raises(ExpiredToken):
        verifier.verify(token, "retrieve", "search")
    with pytest.raises(ExpiredToken):  # and stays refused
        verifier.verify(token, "retrieve", "search")
