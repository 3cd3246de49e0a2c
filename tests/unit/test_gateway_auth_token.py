"""POST /v1/auth/token over stand-in collaborators: an API key becomes a tenant token for the gRPC APIs."""

from __future__ import annotations

import httpx
import pytest
from ragstream_common.service_tokens import WrongAudience
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.security import ALL_SCOPES
from support.tokens import TokenKit
from unit.gateway_deps import gateway_deps, grant

pytestmark = pytest.mark.unit
KEY = "test-key"
KIT = TokenKit()


def _deps(scopes: tuple[str, ...] = ALL_SCOPES, rate_limit: str | None = None) -> GatewayDeps:
    return gateway_deps(grants={KEY: grant(scopes=scopes, rate_limit=rate_limit)})


def _client(deps: GatewayDeps, signing: bool = True) -> httpx.AsyncClient:
    settings = GatewaySettings(admin_token=None, tokens=KIT.settings("gateway") if signing else KIT.settings("embed"))
    transport = httpx.ASGITransport(app=create_app(settings, deps), client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def test_an_api_key_gets_a_short_lived_token_for_its_tenant() -> None:
    deps = _deps()
    async with _client(deps) as client:
        response = await client.post("/v1/auth/token", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "embed generate search"
    verifier = KIT.verifier()
    for audience, scope in (("retrieve", "search"), ("embed", "embed"), ("generate", "generate")):
        verified = verifier.verify(body["access_token"], audience, scope)  # type: ignore[arg-type]
        assert (verified.tenant, verified.issuer, verified.subject) == ("acme", "gateway", "key:key_1")
    with pytest.raises(WrongAudience):  # never a ReplyService token
        verifier.verify(body["access_token"], "gateway", "reply")
    # The token's own row, besides the audit trail's row for the call (audit_trail.py).
    entries = [call.args[0] for call in deps.audit.record.await_args_list]  # type: ignore[attr-defined]
    entry = next(e for e in entries if e.action == "auth.token")
    assert (entry.tenant_id, entry.actor) == ("acme", "key:key_1")
    assert all(body["access_token"] not in str(e.details) for e in entries)


@pytest.mark.parametrize(
    ("headers", "scopes", "signing", "status", "slug"),
    [
        ({}, ALL_SCOPES, True, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, ALL_SCOPES, True, 401, "unauthorized"),
        ({"X-API-Key": KEY}, ("documents:read", "documents:write"), True, 403, "missing-scope"),
        ({"X-API-Key": KEY}, ALL_SCOPES, False, 503, "tokens-disabled"),
    ],
    ids=["no-key", "unknown-key", "no-query-scope", "no-signing-key"],
)
async def test_refusals_are_problems(
    headers: dict[str, str], scopes: tuple[str, ...], signing: bool, status: int, slug: str
) -> None:
    async with _client(_deps(scopes), signing) as client:
        response = await client.post("/v1/auth/token", headers=headers)
    assert response.status_code == status and response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == f"urn:ragstream:problem:{slug}"
    assert "access_token" not in response.json()


async def test_the_tenant_rate_limit_applies() -> None:
    async with _client(_deps(rate_limit="1/minute")) as client:
        statuses = [(await client.post("/v1/auth/token", headers={"X-API-Key": KEY})).status_code for _ in range(2)]
    assert statuses == [200, 429]
