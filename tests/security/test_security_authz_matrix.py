"""Authorization matrix: every operation of the OpenAPI document x every way a credential can be wrong.

Each probe must be refused with a status the operation documents (401, 403 or 404), as problem+json, never 2xx
and never 5xx; 401s carry `WWW-Authenticate`. After each column, tenant A's document, key and tenant are
checked untouched (a refused DELETE must not have deleted anything). A new route is covered by being in the
OpenAPI document; it must also declare its access in `operations.DECLARED_ACCESS`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from ragstream_gateway.problems import PROBLEM_JSON

from security.gateway import asgi_client
from security.operations import PROVIDER_AUTHENTICATED, Operation, derived_access, hidden_routes
from security.world import ADMIN_HEADERS, World

pytestmark = [pytest.mark.security]

# Headers that are not a usable credential in some way (scheme, emptiness, size, bytes, injection).
MALFORMED: list[dict[str, Any]] = [
    {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer    "},
    {"Authorization": "Token rsk_notakey"},
    {"Authorization": "Bearer a b c"},
    {"Authorization": "Bearer rsk_" + "A" * 8192},
    {"Authorization": b"Bearer \xff\xfe\xfd"},
    {"Authorization": "Bearer ' OR '1'='1' --"},
    {"X-API-Key": "' OR 1=1; DROP TABLE api_keys; --"},
    {"X-API-Key": "%00"},
    {"Authorization": "Bearer null", "X-API-Key": ""},
]


@dataclass(frozen=True)
class Probe:
    headers: dict[str, Any]
    expected: frozenset[int]


def _each(headers: list[dict[str, Any]], *expected: int) -> list[Probe]:
    return [Probe(h, frozenset(expected)) for h in headers]


def no_credential(op: Operation, world: World) -> list[Probe]:
    return _each([{}], 401) if op.access.kind != "public" else []


def malformed(op: Operation, world: World) -> list[Probe]:
    return _each(MALFORMED, 401) if op.access.kind != "public" else []


def unknown_key(op: Operation, world: World) -> list[Probe]:
    guesses = [{"Authorization": f"Bearer rsk_{secrets.token_urlsafe(32)}"}, {"X-API-Key": secrets.token_hex(32)}]
    return _each(guesses, 401) if op.access.kind != "public" else []


def _key(state: str, kind: str, *expected: int) -> Callable[[Operation, World], list[Probe]]:
    """The key in `state` on every operation of access `kind` ("tenant" or "admin")."""

    def probes(op: Operation, world: World) -> list[Probe]:
        if op.access.kind != kind:
            return []
        if state in world.skipped:
            pytest.skip(world.skipped[state])
        return _each([world.keys[state].headers()], *expected)

    probes.__name__ = f"{state}_key_on_{kind}_routes"
    return probes


def missing_scope(op: Operation, world: World) -> list[Probe]:
    if op.access.kind != "tenant" or op.access.scope is None:
        return []
    return _each([world.missing_scope[op.access.scope].headers()], 403)


def tenant_key_on_admin_route(op: Operation, world: World) -> list[Probe]:
    if op.access.kind != "admin":
        return []
    secret = world.keys["full"].secret
    return _each([{"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}], 401, 403)


COLUMNS = [
    no_credential,
    malformed,
    unknown_key,
    _key("revoked", "tenant", 401),
    _key("expired", "tenant", 401),
    _key("rotated", "tenant", 401),
    _key("disabled", "tenant", 401, 403),
    missing_scope,
    tenant_key_on_admin_route,
    _key("admin_valid", "tenant", 401, 403),
    _key("admin_revoked", "admin", 401),
    _key("admin_expired", "admin", 401),
    _key("admin_rotated", "admin", 401),
]


def check_refusal(op: Operation, probe: Probe, response: httpx.Response) -> None:
    status = response.status_code
    said = f"{op.label} with {_shown(probe.headers)}: {status} {response.text[:300]}"
    assert status in probe.expected, f"expected {sorted(probe.expected)}; {said}"
    assert status in op.documented, f"the route does not document {status}; {said}"
    assert response.headers.get("content-type") == PROBLEM_JSON, said
    if status == 401:
        assert response.headers.get("www-authenticate"), f"401 without WWW-Authenticate; {said}"


def _shown(headers: dict[str, Any]) -> str:
    return ", ".join(f"{name}: {str(value)[:40]}" for name, value in headers.items()) or "no credential"


async def assert_untouched(world: World) -> None:
    """Tenant A, its document and its unused key are as the fixture left them."""
    async with asgi_client(world.app, world.keys["victim"].headers()) as tenant:
        document = await tenant.get(f"/v1/documents/{world.document_id}")
    assert document.status_code == 200 and document.json()["status"] != "deleted", document.text
    async with asgi_client(world.app, ADMIN_HEADERS) as admin:
        assert (await admin.get(f"/v1/admin/tenants/{world.tenant_a}")).status_code == 200


@pytest.mark.parametrize("column", COLUMNS, ids=lambda c: c.__name__)
async def test_refused(
    column: Callable[[Operation, World], list[Probe]], world: World, subtests: pytest.Subtests
) -> None:
    probed = 0
    for op in world.ops:
        for probe in column(op, world):
            with subtests.test(msg=op.label, headers=_shown(probe.headers)):
                check_refusal(op, probe, await world.call(op, probe.headers))
            probed += 1
    assert probed, f"column {column.__name__} probed no operation"
    await assert_untouched(world)


async def test_other_tenant_cannot_reach_a_tenants_resources(world: World, subtests: pytest.Subtests) -> None:
    """Tenant B's full key on routes naming tenant A's resources: 404 (not 403: their existence is not
    disclosed); on B's own listings, nothing of A's appears."""
    other = world.keys["other_tenant"].headers()
    for op in (o for o in world.ops if o.access.kind == "tenant"):
        if op.path_params:
            probe = Probe(other, frozenset({404}))
            with subtests.test(msg=op.label):
                check_refusal(op, probe, await world.call(op, other))
        elif op.method == "GET":
            with subtests.test(msg=op.label):
                response = await world.call(op, other)
                assert response.status_code in op.documented and response.status_code < 500, response.text
                assert world.document_id not in response.text, f"{op.label} shows tenant A's document to B"
    await assert_untouched(world)


def test_every_operation_declares_its_access(world: World) -> None:
    missing = [f"{op.label} (its dependencies say {op.derived})" for op in world.ops if op.declared is None]
    assert not missing, f"add these operations to security/operations.py DECLARED_ACCESS: {missing}"


def test_declared_access_matches_the_route_dependencies(world: World) -> None:
    wrong = {
        op.label: f"declared {op.declared}, its dependencies say {op.derived}"
        for op in world.ops
        if op.declared is not None and op.declared != op.derived
    }
    assert not wrong, wrong


def test_only_health_probes_and_provider_webhooks_are_public(world: World) -> None:
    """Webhook deliveries carry no API key: each provider authenticates them its own way (signatures,
    clientState, channel tokens), which tests/integration/test_gateway_webhooks.py refuses when forged."""
    public = sorted((op.method, op.path) for op in world.ops if op.access.kind == "public")
    allowed = {("GET", "/healthz"), ("GET", "/readyz")} | PROVIDER_AUTHENTICATED
    assert set(public) <= allowed, public


def test_no_api_route_hides_from_the_matrix(world: World) -> None:
    """The matrix walks the OpenAPI document; a route left out of it (`include_in_schema=False`) would escape,
    so only the metrics scrape (it leaves the API port with issue 11) and the static pages may be hidden: the API
    reference and the console's redirect serve the same files to everyone and read no tenant's data (the
    console's own calls go through the routes the matrix covers)."""
    static_pages = {("GET", "/docs"), ("GET", "/docs/assets/{name}"), ("GET", "/redoc"), ("GET", "/ui")}
    assert set(hidden_routes(world.app)) <= {("GET", "/metrics"), *static_pages}
    assert {(op.method, op.path) for op in world.ops} == set(derived_access(world.app))
