"""Payload corpora (SQL injection, XSS, path traversal, control characters, encodings, oversized strings) in
every string field of every JSON request body the OpenAPI document declares, in every path parameter, and
whole hostile bodies (invalid UTF-8, deep nesting, over the size limit, not an object).

Nothing may answer 5xx, and what is refused is refused with a documented status as problem+json. What is
stored is stored inert: a document whose title, metadata and text are payloads reads back byte for byte as JSON
data (`application/json`, `nosniff`), and a 2xx that echoes a field echoes it unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.uploads import ENVELOPE_BYTES

from security.gateway import asgi_client, next_address
from security.operations import Operation, minimal_instance
from security.payloads import (
    KEY,
    VALUE,
    FieldPath,
    Payload,
    corpus,
    encodable,
    json_bytes,
    nested,
    string_fields,
    value_at,
    with_value,
)
from security.world import ADMIN_HEADERS, World, create_key, create_tenant, fill_path, new_id

pytestmark = [pytest.mark.security]

PAYLOADS = corpus()
JSON_HEADERS = {"Content-Type": "application/json"}
# Questions wait for answers no worker gives in this tier: a 1 ms deadline ends them at once (504, documented).
QUESTION_DEADLINE = {"timeout_ms": 1}
MAX_URL_PAYLOAD = 8000


@pytest.fixture(scope="module")
async def targets(world: World) -> dict[str, str]:
    """Path values for the probes: a tenant and a key of their own (the probes may rename, rotate or offboard
    them), tenant A's document."""
    tenant_id = await create_tenant(world.app, "payloads")
    key = await create_key(world.app, tenant_id)
    values = world.path_values(tenant_id)
    return {**values, "key_id": key.key_id}


def headers_for(op: Operation, world: World) -> dict[str, str]:
    return ADMIN_HEADERS if op.access.kind == "admin" else world.keys["full"].headers()


def base_body(op: Operation) -> Any:
    schema = op.json_body_schema()
    body = minimal_instance(schema or {}, op.components, unique=True)
    if isinstance(body, dict) and "timeout_ms" in (schema or {}).get("properties", {}):
        body.update(QUESTION_DEADLINE)
    return body


def check_answer(op: Operation, response: httpx.Response, said: str) -> None:
    status = response.status_code
    said = f"{op.label} {said}: {status} {response.text[:300]}"
    assert status < 500 or (status == 504 and op.path in ("/v1/query", "/v1/search")), said
    assert status in op.documented, f"undocumented status; {said}"
    if status >= 400:
        assert response.headers.get("content-type") == PROBLEM_JSON, said


def body_operations(world: World) -> list[Operation]:
    return [op for op in world.ops if op.json_body_schema() is not None and op.access.kind != "public"]


async def test_every_string_field_resists_the_corpora(
    world: World, targets: dict[str, str], subtests: pytest.Subtests
) -> None:
    probed = 0
    for op in body_operations(world):
        for path in string_fields(op.json_body_schema() or {}, op.components):
            with subtests.test(msg=op.label, field=".".join(map(str, path))):
                await _probe_field(world, op, targets, path)
            probed += 1
    assert probed >= 10, "the walk found too few string fields; is the OpenAPI document complete?"


async def _probe_field(world: World, op: Operation, targets: dict[str, str], path: FieldPath) -> None:
    async with asgi_client(world.app, headers_for(op, world)) as client:
        for payload in PAYLOADS:
            body = with_value(base_body(op), path, payload.value)
            response = await client.request(op.method, fill_path(op, targets), content=json_bytes(body))
            check_answer(op, response, f"with {payload} at {path}")
            if response.is_success and path[-1] not in (KEY, VALUE):
                echoed = value_at(_json(response), path)
                assert echoed in (None, payload.value), f"{op.label} changed {payload} at {path}: {echoed!r}"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@pytest.mark.parametrize("payload", PAYLOADS, ids=str)
async def test_documents_store_payloads_inert(world: World, payload: Payload) -> None:
    """Title, metadata (key and value) and text: 202 and read back byte-identical, or refused with 422."""
    document_id = new_id("inert")
    body = {
        "id": document_id,
        "title": payload.value,
        "text": payload.value,
        "metadata": {"value": payload.value, payload.value[:128] or "empty": "key"},
    }
    async with asgi_client(world.app, world.keys["full"].headers()) as client:
        upload = await client.post("/v1/documents", content=json_bytes(body), headers=JSON_HEADERS)
        assert upload.status_code in (202, 413, 422), upload.text
        if upload.status_code != 202:
            assert upload.headers["content-type"] == PROBLEM_JSON
            return
        stored = await client.get(f"/v1/documents/{document_id}")
    assert stored.status_code == 200, stored.text
    assert stored.headers["content-type"] == "application/json"
    assert stored.headers.get("x-content-type-options") == "nosniff"
    view = json.loads(stored.content)  # the bytes are JSON: the payload is data inside a JSON string
    assert view["title"] == payload.value
    assert view["metadata"] == body["metadata"]
    assert encodable(payload.value), "text without a UTF-8 form must not be accepted"
    assert view["content_sha256"] == hashlib.sha256(payload.value.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("payload", PAYLOADS, ids=str)
async def test_document_ids_are_refused_or_reachable(world: World, payload: Payload) -> None:
    """A payload as the document id: refused (422), or stored under exactly that id and readable at it."""
    async with asgi_client(world.app, world.keys["full"].headers()) as client:
        body = {"id": payload.value, "text": "x"}
        upload = await client.post("/v1/documents", content=json_bytes(body), headers=JSON_HEADERS)
        assert upload.status_code in (200, 202, 413, 422), upload.text
        if not upload.is_success:
            return
        assert upload.json()["document_id"] == payload.value
        # Dots encoded too: clients (and httpx) remove `.` and `..` segments from a path (docs/security-S.md).
        stored = await client.get(f"/v1/documents/{quote(payload.value, safe='').replace('.', '%2E')}")
    assert stored.status_code == 200 and stored.json()["document_id"] == payload.value, stored.text


async def test_path_parameters_resist_the_corpora(
    world: World, targets: dict[str, str], subtests: pytest.Subtests
) -> None:
    for op in (o for o in world.ops if o.path_params and o.access.kind != "public"):
        for name in op.path_params:
            with subtests.test(msg=op.label, param=name):
                async with asgi_client(world.app, headers_for(op, world)) as client:
                    for payload in PAYLOADS:
                        if not encodable(payload.value) or len(payload.value) > MAX_URL_PAYLOAD:
                            continue  # a URL carries UTF-8 only, and clients refuse very long ones
                        url = fill_path(op, {**targets, name: quote(payload.value, safe="")})
                        body = json_bytes(base_body(op)) if op.json_body_schema() is not None else None
                        response = await client.request(op.method, url, content=body, headers=JSON_HEADERS)
                        assert response.status_code < 500, f"{op.label} {name}={payload}: {response.text[:300]}"
                        if response.status_code >= 400:
                            assert response.headers.get("content-type") == PROBLEM_JSON, response.text[:300]


HOSTILE_BODIES = {
    "invalid-utf8": b'{"text": "\xff\xfe\xc3\x28", "question": "\xc0\xaf", "name": "\xed\xa0\x80"}',
    "nested-100k": nested(100_000),
    "nested-array-100k": b"[" * 100_000 + b"]" * 100_000,
    "array": b"[]",
    "string": b'"text"',
    "null": b"null",
    "truncated": b'{"text": "abc',
    "duplicate-keys": b'{"text": "a", "text": "b", "tenant_id": "x", "tenant_id": "y"}',
    "huge-number": b'{"top_k": 1' + b"0" * 5000 + b', "timeout_ms": 1e999, "grace_seconds": -1e999}',
    "nul-in-key": b'{"\\u0000": "x", "text": "x"}',
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
async def test_hostile_bodies_are_refused_cleanly(world: World, targets: dict[str, str], name: str) -> None:
    for op in body_operations(world):
        async with asgi_client(world.app, headers_for(op, world)) as client:
            response = await client.request(
                op.method, fill_path(op, targets), content=HOSTILE_BODIES[name], headers=JSON_HEADERS
            )
        check_answer(op, response, f"with body {name}")


async def test_oversized_body_is_413_before_it_is_read(world: World) -> None:
    limit = world.app.state.services.settings.max_upload_bytes + ENVELOPE_BYTES
    async with asgi_client(world.app, world.keys["full"].headers()) as client:
        body = b'{"text": "' + b"A" * limit + b'"}'
        response = await client.post("/v1/documents", content=body, headers=JSON_HEADERS)
    assert response.status_code == 413 and response.headers["content-type"] == PROBLEM_JSON, response.text


@pytest.mark.parametrize("field", ["id", "title", "metadata"])
async def test_multipart_fields_resist_the_corpora(world: World, field: str, subtests: pytest.Subtests) -> None:
    """The multipart upload's form fields (metadata is a JSON string there: nested, invalid and hostile too)."""
    values: list[tuple[str, str | bytes]] = [(str(p), p.value) for p in PAYLOADS if encodable(p.value)]
    values += [("invalid-utf8", b"\xff\xfe\xc3\x28"), ("nested-json", nested(100_000))]
    async with asgi_client(world.app, world.keys["full"].headers()) as client:
        for name, value in values:
            with subtests.test(msg=name):
                data = {field: value} if field != "metadata" or isinstance(value, bytes) else {field: json.dumps(value)}
                files = {"file": ("a.txt", b"payload test", "text/plain")}
                response = await client.post("/v1/documents", data=data, files=files)
                assert response.status_code in (200, 202, 413, 422), f"{field}={name}: {response.text[:300]}"


async def test_a_nul_in_the_path_does_not_escape_the_audit_log(world: World) -> None:
    """A refused key is audited whatever the path holds: a NUL (which Postgres text cannot store) must not make
    the refusal's audit row fail, or it would be a way to probe keys unrecorded."""
    ip = next_address()
    async with asgi_client(world.app, world.keys["revoked"].headers(), ip) as client:
        refused = await client.get("/v1/documents/probe%00")
    assert refused.status_code == 401, refused.text
    async with asgi_client(world.app, ADMIN_HEADERS) as admin:
        audit = await admin.get(f"/v1/admin/tenants/{world.tenant_a}/audit", params={"limit": 1000})
    assert audit.status_code == 200, audit.text
    assert any(entry["client_ip"] == ip for entry in audit.json()["items"]), "the refusal left no audit row"
