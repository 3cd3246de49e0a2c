"""API key parsing and hashing, client address allowlists."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest
from ragstream_gateway.security import (
    KEY_PREFIX,
    address_allowed,
    extract_api_key,
    hash_api_key,
    key_preview,
    new_api_key,
    tokens_match,
)
from starlette.datastructures import Headers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer   abc  "}, "abc"),
        ({"AUTHORIZATION": "BEARER abc"}, "abc"),
        ({"X-API-Key": "k1"}, "k1"),
        ({"x-api-key": " k1 "}, "k1"),
        ({"Authorization": "Bearer abc", "X-API-Key": "k1"}, "abc"),
        ({"Authorization": "Basic dXNlcjpwdw==", "X-API-Key": "k1"}, "k1"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, None),
        ({"Authorization": "Bearer "}, None),
        ({"Authorization": "Bearer"}, None),
        ({"X-API-Key": ""}, None),
        ({}, None),
    ],
)
def test_extract_api_key(headers: dict[str, str], expected: str | None) -> None:
    assert extract_api_key(Headers(headers)) == expected


def test_keys_are_stored_as_sha256_hex() -> None:
    assert hash_api_key("dev-key") == hashlib.sha256(b"dev-key").hexdigest()


def test_new_keys_are_random_prefixed_and_previewable() -> None:
    first, second = new_api_key(), new_api_key()
    assert first != second and first.startswith(KEY_PREFIX) and len(first) > 40
    assert key_preview(first) == first[: len(KEY_PREFIX) + 4]


def test_token_comparison() -> None:
    assert tokens_match("secret", "secret")
    assert not tokens_match("secreT", "secret")
    assert not tokens_match(None, "secret")
    assert not tokens_match("", "secret")


@pytest.mark.parametrize(
    ("ip", "allowlist", "allowed"),
    [
        ("10.1.2.3", [], True),
        ("garbage", [], True),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("11.1.2.3", ["10.0.0.0/8"], False),
        ("11.1.2.3", ["10.0.0.0/8", "11.1.2.3/32"], True),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),
        ("2001:db8::1", ["2001:db8::/32"], True),
        ("2001:db8::1", ["10.0.0.0/8"], False),
        ("", ["10.0.0.0/8"], False),
        ("testclient", ["10.0.0.0/8"], False),
    ],
)
def test_address_allowlist(ip: str, allowlist: list[str], allowed: bool) -> None:
    networks = [ipaddress.ip_network(cidr) for cidr in allowlist]
    assert address_allowed(ip, networks) is allowed


def test_scope_names_agree_with_the_api_models() -> None:
    from typing import get_args

    from ragstream_gateway.models import ApiKeyIn, Scope
    from ragstream_gateway.security import ALL_SCOPES

    assert get_args(Scope) == ALL_SCOPES
    assert tuple(ApiKeyIn().scopes) == ALL_SCOPES
