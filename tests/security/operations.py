"""The gateway's operations as its OpenAPI document lists them, each with the access it requires.

The required access is declared here (`DECLARED_ACCESS`) and also derived from the route's FastAPI dependencies
(`derived_access`); the suite fails when an operation has no declaration (a new route must say who may call it)
or when the two disagree (a route that lost its auth dependency). Declarations for routes that do not exist
yet (issue 11's key listing, rotation, tenant updates, audit verification) are kept, so those routes are
covered by the matrix as soon as they appear.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Access:
    kind: Literal["public", "tenant", "admin"]
    scope: str | None = None  # the API-key scope a tenant route requires

    def __str__(self) -> str:
        return self.kind if self.scope is None else f"{self.kind}:{self.scope}"


PUBLIC = Access("public")
ADMIN = Access("admin")


def scope(name: str) -> Access:
    return Access("tenant", name)


DECLARED_ACCESS: dict[tuple[str, str], Access] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("POST", "/v1/auth/token"): scope("query"),
    ("POST", "/v1/documents"): scope("documents:write"),
    ("GET", "/v1/documents"): scope("documents:read"),
    ("GET", "/v1/documents/{document_id}"): scope("documents:read"),
    ("DELETE", "/v1/documents/{document_id}"): scope("documents:write"),
    ("POST", "/v1/query"): scope("query"),
    ("POST", "/v1/search"): scope("query"),
    ("GET", "/v1/admin/tenants"): ADMIN,
    ("POST", "/v1/admin/tenants"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}"): ADMIN,
    ("PATCH", "/v1/admin/tenants/{tenant_id}"): ADMIN,
    ("DELETE", "/v1/admin/tenants/{tenant_id}"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/api-keys"): ADMIN,
    ("POST", "/v1/admin/tenants/{tenant_id}/api-keys"): ADMIN,
    ("DELETE", "/v1/admin/tenants/{tenant_id}/api-keys/{key_id}"): ADMIN,
    ("POST", "/v1/admin/tenants/{tenant_id}/api-keys/{key_id}/rotate"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/audit"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/audit/verify"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/audit/settings"): ADMIN,
    ("PUT", "/v1/admin/tenants/{tenant_id}/audit/settings"): ADMIN,
    ("GET", "/v1/admin/admin-keys"): ADMIN,
    ("POST", "/v1/admin/admin-keys"): ADMIN,
    ("DELETE", "/v1/admin/admin-keys/{key_id}"): ADMIN,
    ("POST", "/v1/admin/admin-keys/{key_id}/rotate"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/usage"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/usage/metered"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/usage/cost"): ADMIN,
    ("PUT", "/v1/admin/tenants/{tenant_id}/budget"): ADMIN,
    ("GET", "/v1/usage"): scope("documents:read"),
    ("GET", "/v1/usage/cost"): scope("documents:read"),
    ("POST", "/v1/admin/tenants/{tenant_id}/kafka-credentials"): ADMIN,
    ("GET", "/v1/admin/health"): ADMIN,
    ("GET", "/v1/admin/dlq"): ADMIN,
    ("GET", "/v1/admin/dlq/{topic}/events"): ADMIN,
    ("GET", "/v1/admin/dlq/{topic}/events/{offset}"): ADMIN,
    ("POST", "/v1/admin/dlq/{topic}/events/{offset}/redrive"): ADMIN,
    ("POST", "/v1/admin/dlq/{topic}/redrive"): ADMIN,
    ("POST", "/v1/connectors"): scope("connectors:admin"),
    ("GET", "/v1/connectors"): scope("connectors:admin"),
    ("GET", "/v1/connectors/{connector_id}"): scope("connectors:admin"),
    ("DELETE", "/v1/connectors/{connector_id}"): scope("connectors:admin"),
    ("POST", "/v1/connectors/{connector_id}/sync"): scope("connectors:admin"),
    ("POST", "/v1/connectors/{connector_id}/rotate-secret"): scope("connectors:admin"),
    ("POST", "/v1/admin/tenants/{tenant_id}/connectors"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/connectors"): ADMIN,
    ("GET", "/v1/admin/tenants/{tenant_id}/connectors/{connector_id}"): ADMIN,
    ("DELETE", "/v1/admin/tenants/{tenant_id}/connectors/{connector_id}"): ADMIN,
    ("POST", "/v1/admin/tenants/{tenant_id}/connectors/{connector_id}/sync"): ADMIN,
    ("POST", "/v1/admin/tenants/{tenant_id}/connectors/{connector_id}/rotate-secret"): ADMIN,
    # No API key: each provider's own authentication (signatures, clientState, channel token), checked by the
    # route against the connector's secrets (routes/webhooks.py); public to the matrix, see PROVIDER_AUTHENTICATED.
    ("POST", "/v1/webhooks/{connector_id}"): PUBLIC,
}
# Public operations that are not open: the provider authenticates each request its own way.
PROVIDER_AUTHENTICATED = frozenset({("POST", "/v1/webhooks/{connector_id}")})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]
    components: dict[str, Any]
    # What the route's dependencies demand; the matrix uses the declaration when there is one.
    derived: Access = PUBLIC

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def declared(self) -> Access | None:
        return DECLARED_ACCESS.get((self.method, self.path))

    @property
    def access(self) -> Access:
        return self.declared or self.derived

    @property
    def documented(self) -> frozenset[int]:
        return frozenset(int(code) for code in self.spec.get("responses", {}) if code.isdigit())

    @property
    def path_params(self) -> list[str]:
        return [p["name"] for p in self.spec.get("parameters", []) if p["in"] == "path"]

    def json_body_schema(self) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        return resolve(schema, self.components) if schema else None


def operations(app: FastAPI) -> list[Operation]:
    """The operations of `app`'s OpenAPI document, in path order."""
    openapi = app.openapi()
    components = openapi.get("components", {})
    derived = derived_access(app)
    return [
        Operation(method.upper(), path, spec, components, derived.get((method.upper(), path), PUBLIC))
        for path, item in sorted(openapi["paths"].items())
        for method, spec in item.items()
        if method in HTTP_METHODS
    ]


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its top-level `$ref` followed (nested refs are followed where they are used)."""
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = components["schemas"][name]
    return schema


def derived_access(app: FastAPI) -> dict[tuple[str, str], Access]:
    """What each route's dependencies demand: the admin check, an API-key scope, or nothing."""
    found: dict[tuple[str, str], Access] = {}
    for context in iter_route_contexts(app.routes):  # routers included into the app, flattened
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema or context.path is None:
            continue
        calls = list(_dependency_calls(route.dependant))
        for method in context.methods or ():
            found[(method, context.path)] = _access_of(calls)
    return found


def hidden_routes(app: FastAPI) -> list[tuple[str, str]]:
    """API routes the OpenAPI document leaves out."""
    return [
        (method, context.path or "")
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and not context.original_route.include_in_schema
        for method in context.methods or ()
    ]


def _dependency_calls(dependant: Any) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _dependency_calls(sub)


def _access_of(calls: list[Callable[..., Any]]) -> Access:
    names = [getattr(call, "__qualname__", "") for call in calls]
    if any("admin" in name.split(".")[0] for name in names):
        return ADMIN
    for call, name in zip(calls, names, strict=True):
        if name.startswith("require_scope."):
            return scope(inspect.getclosurevars(call).nonlocals["scope"])
    if "authenticate" in names:
        return Access("tenant")
    return PUBLIC


def minimal_instance(schema: dict[str, Any], components: dict[str, Any], unique: bool = False) -> Any:
    """A small instance of `schema` (required members only), enough to get past validation to the handler;
    `unique` makes its strings new ids (for bodies that create something named by them)."""
    schema = resolve(schema, components)
    if "enum" in schema:
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        options = [s for s in schema.get(union, []) if s.get("type") != "null"]
        if options:
            return minimal_instance(options[0], components, unique)
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        props = schema.get("properties", {})
        return {key: minimal_instance(props.get(key, {}), components, unique) for key in required}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return f"sec-{uuid.uuid4().hex[:12]}" if unique else "sample"
