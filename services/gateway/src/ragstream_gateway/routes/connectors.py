"""Connector API (docs/connectors.md): a tenant's keys with the `connectors:admin` scope manage its connectors
under /v1/connectors; the admin credential manages any tenant's under /v1/admin/tenants/{tenant_id}/connectors.

Secrets go in, never out: responses, logs and audit entries carry the config only, except the one creation (or
rotation) response that shows a webhook connector's signing secret. Another tenant's connector is 404, never
403, so ids reveal nothing. Every change is audited (`connector.create`, `.remove`, `.resync`, `.rotate_secret`)
in the connector's tenant's log, as the key or the admin that made it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.connector_models import (
    ConnectorAccepted,
    ConnectorCreated,
    ConnectorIn,
    ConnectorPage,
    ConnectorView,
    SigningSecretRotated,
)
from ragstream_gateway.connector_ports import ConnectorRecord, ConnectorSyncStatus
from ragstream_gateway.connectors import (
    ConnectorConflict,
    ConnectorNotFound,
    ConnectorService,
    ConnectorSpec,
    NotPublished,
    webhook_url,
)
from ragstream_gateway.deps import (
    GatewayDeps,
    Principal,
    client_ip,
    get_connector_service,
    get_deps,
    get_settings,
    require_admin,
    require_scope,
)
from ragstream_gateway.documents import Caller
from ragstream_gateway.problems import Problem, concealed, problem_responses
from ragstream_gateway.routes.admin_keys import require_tenant
from ragstream_gateway.routes.params import TenantIdPath
from ragstream_gateway.security import SCOPE_CONNECTORS_ADMIN

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])
admin_router = APIRouter(prefix="/v1/admin/tenants/{tenant_id}/connectors", tags=["admin"])
# The caller (scope or admin) comes first in every signature: it is checked before the service's own 503.
Manager = Annotated[Principal, Depends(require_scope(SCOPE_CONNECTORS_ADMIN))]
Admin = Annotated[str, Depends(require_admin)]
Service = Annotated[ConnectorService, Depends(get_connector_service)]
Settings = Annotated[GatewaySettings, Depends(get_settings)]
# Ids are `con_<hex>`; anything else of this harmless shape is simply not found (404), the rest is 422.
ConnectorIdPath = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="`con_...`")]
ConnectorBody = Annotated[ConnectorIn, Body(description="`type` selects the provider and its config and secrets")]
IncludeRemoved = Annotated[bool, Query(description="Also list removed connectors")]
Purge = Annotated[bool, Query(description="Also delete every document the connector brought in")]
PROBLEMS = (404, 422)


def connector_view(record: ConnectorRecord, sync: ConnectorSyncStatus, base_url: str) -> ConnectorView:
    return ConnectorView(
        connector_id=record.connector_id,
        provider=record.provider,
        name=record.name,
        status=record.status,
        config=dict(record.config),
        webhook_url=webhook_url(base_url, record.connector_id),
        created_at=record.created_at,
        last_notification_at=sync.last_notification_at,
        last_sync_at=sync.last_sync_at,
        items_synced=sync.items_synced,
        error_count=sync.error_count,
        last_error=sync.last_error,
        subscription_expires_at=sync.subscription_expires_at,
        next_poll_at=sync.next_poll_at,
    )


def _not_found(connector_id: str) -> Problem:
    return Problem(404, f"no connector {connector_id!r}", slug="connector-not-found")


def _not_published(request: Request, exc: NotPublished) -> Problem:
    return concealed(
        request,
        503,
        f"{exc}; nothing changed, retry the request",
        slug="publish-failed",
        cause=exc.__cause__ or exc,
        headers={"Retry-After": "5"},
    )


async def _create(
    request: Request,
    response: Response,
    service: ConnectorService,
    settings: GatewaySettings,
    body: ConnectorIn,
    tenant_id: str,
    caller: Caller,
) -> ConnectorCreated:
    spec = ConnectorSpec(body.type, body.name, body.config_values(), body.secret_values())
    created = await service.create(tenant_id, spec, caller)
    record = created.record
    response.headers["Location"] = f"{request.url.path}/{record.connector_id}"
    return ConnectorCreated(
        connector_id=record.connector_id,
        webhook_url=webhook_url(settings.public_base_url, record.connector_id),
        status=record.status,
        signing_secret=created.signing_secret,
    )


async def _get(service: ConnectorService, tenant_id: str, connector_id: str, base_url: str) -> ConnectorView:
    try:
        record, sync = await service.status(tenant_id, connector_id)
    except ConnectorNotFound:
        raise _not_found(connector_id) from None
    return connector_view(record, sync, base_url)


async def _list(service: ConnectorService, tenant_id: str, include_removed: bool, base_url: str) -> ConnectorPage:
    found = await service.list(tenant_id, include_removed=include_removed)
    return ConnectorPage(items=[connector_view(record, sync, base_url) for record, sync in found])


async def _remove(
    request: Request, service: ConnectorService, tenant_id: str, connector_id: str, purge: bool, caller: Caller
) -> ConnectorAccepted:
    try:
        status = await service.remove(tenant_id, connector_id, purge=purge, caller=caller)
    except ConnectorNotFound:
        raise _not_found(connector_id) from None
    except NotPublished as exc:
        raise _not_published(request, exc) from None
    return ConnectorAccepted(connector_id=connector_id, status=status)


async def _resync(
    request: Request, service: ConnectorService, tenant_id: str, connector_id: str, caller: Caller
) -> ConnectorAccepted:
    try:
        record = await service.resync(tenant_id, connector_id, caller)
    except ConnectorNotFound:
        raise _not_found(connector_id) from None
    except ConnectorConflict as exc:
        raise Problem(409, str(exc), slug="connector-not-active") from None
    except NotPublished as exc:
        raise _not_published(request, exc) from None
    return ConnectorAccepted(connector_id=connector_id, status=record.status)


async def _rotate(service: ConnectorService, tenant_id: str, connector_id: str, caller: Caller) -> SigningSecretRotated:
    try:
        secret, expires_at = await service.rotate_secret(tenant_id, connector_id, caller)
    except ConnectorNotFound:
        raise _not_found(connector_id) from None
    except ConnectorConflict as exc:
        raise Problem(409, str(exc), slug="connector-secret-not-rotatable") from None
    return SigningSecretRotated(connector_id=connector_id, signing_secret=secret, previous_secret_expires_at=expires_at)


CREATE_SUMMARY = "Create a connector; a webhook connector's signing secret is returned only here"
REMOVE_SUMMARY = "Remove a connector: unsubscribed at the provider, with purge=true its documents deleted"
RESYNC_SUMMARY = "Full resync: enumerate the source again"
ROTATE_SUMMARY = "New signing secret for a webhook connector; the previous one stays valid 24 h"


# Tenant routes


@router.post(
    "",
    status_code=201,
    response_model=ConnectorCreated,
    response_model_exclude_none=True,
    responses=problem_responses(422),
    summary=CREATE_SUMMARY,
)
async def create_connector(
    principal: Manager, body: ConnectorBody, request: Request, response: Response, service: Service, settings: Settings
) -> ConnectorCreated:
    return await _create(request, response, service, settings, body, principal.tenant_id, principal.caller())


@router.get("", response_model=ConnectorPage, responses=problem_responses(422), summary="Connectors, oldest first")
async def list_connectors(
    principal: Manager, service: Service, settings: Settings, include_removed: IncludeRemoved = False
) -> ConnectorPage:
    return await _list(service, principal.tenant_id, include_removed, settings.public_base_url)


@router.get("/{connector_id}", response_model=ConnectorView, responses=problem_responses(*PROBLEMS))
async def get_connector(
    principal: Manager, connector_id: ConnectorIdPath, service: Service, settings: Settings
) -> ConnectorView:
    return await _get(service, principal.tenant_id, connector_id, settings.public_base_url)


@router.delete(
    "/{connector_id}",
    status_code=202,
    response_model=ConnectorAccepted,
    responses=problem_responses(*PROBLEMS, 503),
    summary=REMOVE_SUMMARY,
)
async def remove_connector(
    principal: Manager, connector_id: ConnectorIdPath, request: Request, service: Service, purge: Purge = False
) -> ConnectorAccepted:
    return await _remove(request, service, principal.tenant_id, connector_id, purge, principal.caller())


@router.post(
    "/{connector_id}/sync",
    status_code=202,
    response_model=ConnectorAccepted,
    responses=problem_responses(*PROBLEMS, 409, 503),
    summary=RESYNC_SUMMARY,
)
async def resync_connector(
    principal: Manager, connector_id: ConnectorIdPath, request: Request, service: Service
) -> ConnectorAccepted:
    return await _resync(request, service, principal.tenant_id, connector_id, principal.caller())


@router.post(
    "/{connector_id}/rotate-secret",
    response_model=SigningSecretRotated,
    responses=problem_responses(*PROBLEMS, 409),
    summary=ROTATE_SUMMARY,
)
async def rotate_connector_secret(
    principal: Manager, connector_id: ConnectorIdPath, service: Service
) -> SigningSecretRotated:
    return await _rotate(service, principal.tenant_id, connector_id, principal.caller())


# Admin routes: any tenant's connectors, as the admin actor, in that tenant's audit log


async def admin_caller(
    request: Request, actor: Admin, tenant_id: TenantIdPath, deps: Annotated[GatewayDeps, Depends(get_deps)]
) -> Caller:
    """The admin as the caller of a change to `tenant_id`'s connectors; 404 for an unknown (or reserved) tenant."""
    await require_tenant(deps, tenant_id)
    return Caller(actor=actor, client_ip=client_ip(request))


AdminCaller = Annotated[Caller, Depends(admin_caller)]


@admin_router.post(
    "",
    status_code=201,
    response_model=ConnectorCreated,
    response_model_exclude_none=True,
    responses=problem_responses(404, 422),
    summary=CREATE_SUMMARY,
)
async def admin_create_connector(
    caller: AdminCaller,
    tenant_id: TenantIdPath,
    body: ConnectorBody,
    request: Request,
    response: Response,
    service: Service,
    settings: Settings,
) -> ConnectorCreated:
    return await _create(request, response, service, settings, body, tenant_id, caller)


@admin_router.get(
    "", response_model=ConnectorPage, responses=problem_responses(*PROBLEMS), summary="A tenant's connectors"
)
async def admin_list_connectors(
    caller: AdminCaller,
    tenant_id: TenantIdPath,
    service: Service,
    settings: Settings,
    include_removed: IncludeRemoved = False,
) -> ConnectorPage:
    return await _list(service, tenant_id, include_removed, settings.public_base_url)


@admin_router.get("/{connector_id}", response_model=ConnectorView, responses=problem_responses(*PROBLEMS))
async def admin_get_connector(
    caller: AdminCaller, tenant_id: TenantIdPath, connector_id: ConnectorIdPath, service: Service, settings: Settings
) -> ConnectorView:
    return await _get(service, tenant_id, connector_id, settings.public_base_url)


@admin_router.delete(
    "/{connector_id}",
    status_code=202,
    response_model=ConnectorAccepted,
    responses=problem_responses(*PROBLEMS, 503),
    summary=REMOVE_SUMMARY,
)
async def admin_remove_connector(
    caller: AdminCaller,
    tenant_id: TenantIdPath,
    connector_id: ConnectorIdPath,
    request: Request,
    service: Service,
    purge: Purge = False,
) -> ConnectorAccepted:
    return await _remove(request, service, tenant_id, connector_id, purge, caller)


@admin_router.post(
    "/{connector_id}/sync",
    status_code=202,
    response_model=ConnectorAccepted,
    responses=problem_responses(*PROBLEMS, 409, 503),
    summary=RESYNC_SUMMARY,
)
async def admin_resync_connector(
    caller: AdminCaller, tenant_id: TenantIdPath, connector_id: ConnectorIdPath, request: Request, service: Service
) -> ConnectorAccepted:
    return await _resync(request, service, tenant_id, connector_id, caller)


@admin_router.post(
    "/{connector_id}/rotate-secret",
    response_model=SigningSecretRotated,
    responses=problem_responses(*PROBLEMS, 409),
    summary=ROTATE_SUMMARY,
)
async def admin_rotate_connector_secret(
    caller: AdminCaller, tenant_id: TenantIdPath, connector_id: ConnectorIdPath, service: Service
) -> SigningSecretRotated:
    return await _rotate(service, tenant_id, connector_id, caller)
