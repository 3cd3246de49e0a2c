"""The gateway under test and the principals it probes with, created through the admin API like a user would.

Tenant A owns a document and one key per credential state (valid, revoked, expired, rotated past its grace
period, one lacking each scope); tenant B is another tenant with every scope; tenant C is disabled; admin API
keys are valid, revoked, expired and rotated past their grace period. States whose routes do not exist are
recorded in `World.skipped` with the reason. Everything lives in the session's Postgres and Kafka, under ids unique
to this run.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from security.gateway import ADMIN_TOKEN, asgi_client
from security.operations import Operation, minimal_instance, operations

RUN = uuid.uuid4().hex[:8]
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TENANT_ROTATE = ("POST", "/v1/admin/tenants/{tenant_id}/api-keys/{key_id}/rotate")
ADMIN_KEYS = ("POST", "/v1/admin/admin-keys")
ADMIN_ROTATE = ("POST", "/v1/admin/admin-keys/{key_id}/rotate")
ADMIN_KEY_STATES = ("admin_valid", "admin_revoked", "admin_expired", "admin_rotated")
EXPIRY_S = 2.0
PATCH_TENANT = ("PATCH", "/v1/admin/tenants/{tenant_id}")


@dataclass
class Key:
    key_id: str
    secret: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@dataclass
class World:
    """The gateway app and the principals of this run; `skipped` says why a credential state is unavailable."""

    app: FastAPI
    ops: list[Operation]
    tenant_a: str
    tenant_b: str
    document_id: str
    keys: dict[str, Key] = field(default_factory=dict)
    missing_scope: dict[str, Key] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def op(self, method: str, path: str) -> Operation | None:
        return next((o for o in self.ops if (o.method, o.path) == (method, path)), None)

    def path_values(self, tenant_id: str | None = None) -> dict[str, str]:
        return {
            "tenant_id": tenant_id or self.tenant_a,
            "document_id": self.document_id,
            "key_id": self.keys["victim"].key_id,
            "topic": "rag.documents.received.v1.dlq",
            "offset": "0",
        }

    def url(self, op: Operation, tenant_id: str | None = None) -> str:
        return fill_path(op, self.path_values(tenant_id))

    def body(self, op: Operation) -> Any:
        schema = op.json_body_schema()
        return None if schema is None else minimal_instance(schema, op.components)

    async def call(self, op: Operation, headers: dict[str, Any]) -> httpx.Response:
        """`op` on tenant A's resources with a small valid body, from an address of its own."""
        async with asgi_client(self.app, headers) as client:
            return await client.request(op.method, self.url(op), json=self.body(op))


def fill_path(op: Operation, values: dict[str, str]) -> str:
    """`op`'s path with its parameters from `values` (else a placeholder of the parameter's type)."""
    path = op.path
    for param in op.spec.get("parameters", []):
        if param["in"] == "path":
            fallback = "1" if param.get("schema", {}).get("type") == "integer" else "sample"
            path = path.replace("{" + param["name"] + "}", values.get(param["name"], fallback))
    return path


def new_id(prefix: str) -> str:
    return f"sec-{prefix}-{RUN}-{uuid.uuid4().hex[:6]}"


async def admin_call(app: FastAPI, method: str, path: str, body: Any = None, expect: int = 201) -> Any:
    async with asgi_client(app, ADMIN_HEADERS) as admin:
        response = await admin.request(method, path, json=body)
    assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
    return response.json() if response.content else None


async def create_tenant(app: FastAPI, prefix: str) -> str:
    tenant_id = new_id(prefix)
    await admin_call(app, "POST", "/v1/admin/tenants", {"tenant_id": tenant_id, "name": f"security {prefix}"})
    return tenant_id


async def create_key(app: FastAPI, tenant_id: str, **body: Any) -> Key:
    created = await admin_call(app, "POST", f"/v1/admin/tenants/{tenant_id}/api-keys", {"name": "security", **body})
    return Key(created["key_id"], created["api_key"])


def tenant_scopes(ops: list[Operation]) -> list[str]:
    """The scopes a tenant key can hold (those the routes require), from the declared access."""
    return sorted({o.access.scope for o in ops if o.access.kind == "tenant" and o.access.scope})


async def works(app: FastAPI, key: Key, *, admin: bool = False) -> bool:
    """Whether `key` is admitted now (the positive control before it is made unusable)."""
    path = "/v1/admin/admin-keys" if admin else "/v1/documents"
    async with asgi_client(app, key.headers()) as client:
        return (await client.get(path, params={"limit": 1})).status_code == 200


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def build_world(app: FastAPI) -> World:
    """Tenants, keys and a document through the admin and documents APIs; keys that expire do so in
    EXPIRY_S, after their positive control, so that no validation of past expiries gets in the way."""
    ops = operations(app)
    tenant_a, tenant_b = await create_tenant(app, "a"), await create_tenant(app, "b")
    world = World(app, ops, tenant_a, tenant_b, new_id("doc"))
    keys = world.keys
    for name in ("full", "victim", "revoked", "rotated"):
        keys[name] = await create_key(app, tenant_a)
    keys["expired"] = await create_key(app, tenant_a, expires_at=soon(EXPIRY_S))
    keys["other_tenant"] = await create_key(app, tenant_b)
    scopes = tenant_scopes(ops)
    for lacking in scopes:
        world.missing_scope[lacking] = await create_key(app, tenant_a, scopes=[s for s in scopes if s != lacking])
    async with asgi_client(app, keys["full"].headers()) as client:
        upload = await client.post("/v1/documents", json={"id": world.document_id, "text": "tenant A's secret text"})
    assert upload.status_code == 202, upload.text
    for name in ("revoked", "rotated", "expired"):
        assert await works(app, keys[name]), f"the {name} key must have worked before"
    await admin_call(app, "DELETE", f"/v1/admin/tenants/{tenant_a}/api-keys/{keys['revoked'].key_id}", expect=204)
    await _admin_keys(world)
    tenant_rotation = f"/v1/admin/tenants/{tenant_a}/api-keys/{{key_id}}/rotate"
    graces = [
        await _rotate(world, "rotated", TENANT_ROTATE, tenant_rotation),
        await _rotate(world, "admin_rotated", ADMIN_ROTATE, "/v1/admin/admin-keys/{key_id}/rotate"),
    ]
    await _disable(world)
    await asyncio.sleep(max(EXPIRY_S, *graces) + 1.1)  # past every expiry and grace period
    return world


async def _admin_keys(world: World) -> None:
    """Admin API keys (issue 11 item 2): one valid, one revoked, one expiring, one to rotate."""
    if world.op(*ADMIN_KEYS) is None:
        for name in ADMIN_KEY_STATES:
            world.skipped[name] = "no admin API keys yet (POST /v1/admin/admin-keys, issue 11 item 2)"
        return
    keys = world.keys
    for name in ADMIN_KEY_STATES:
        body = {"name": f"security {name}", **({"expires_at": soon(EXPIRY_S)} if name == "admin_expired" else {})}
        created = await admin_call(world.app, "POST", "/v1/admin/admin-keys", body)
        keys[name] = Key(created["key_id"], created["api_key"])
        assert await works(world.app, keys[name], admin=True), f"the {name} key must have worked before"
    await admin_call(world.app, "DELETE", f"/v1/admin/admin-keys/{keys['admin_revoked'].key_id}", expect=204)


async def _rotate(world: World, name: str, route: tuple[str, str], path: str) -> int:
    """Rotate key `name` with the shortest grace period the route allows; that period in seconds."""
    op = world.op(*route)
    if op is None or name not in world.keys:
        world.skipped.setdefault(name, f"no key rotation route yet ({route[0]} {route[1]}, issue 11 item 1)")
        return 0
    schema = op.json_body_schema() or {}
    grace = int(schema.get("properties", {}).get("grace_seconds", {}).get("minimum", 0))
    if grace > 5:
        world.skipped[name] = f"the shortest grace period is {grace} s; too long to wait out here"
        return 0
    await admin_call(world.app, "POST", path.format(key_id=world.keys[name].key_id), {"grace_seconds": grace})
    return grace


async def _disable(world: World) -> None:
    op = world.op(*PATCH_TENANT)
    body = op.json_body_schema() if op is not None else None
    if body is None or "disabled" not in body.get("properties", {}):
        world.skipped["disabled"] = "no tenant updates yet (PATCH /v1/admin/tenants/{id}, issue 11 item 2)"
        return
    tenant_c = await create_tenant(world.app, "c")
    world.keys["disabled"] = key = await create_key(world.app, tenant_c)
    assert await works(world.app, key), "the disabled tenant's key must have worked before"
    await admin_call(world.app, "PATCH", f"/v1/admin/tenants/{tenant_c}", {"disabled": True}, expect=200)
