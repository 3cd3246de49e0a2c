"""Provider webhooks: POST /v1/webhooks/{connector_id}, authenticated by each provider's own scheme, never an API
key (webhook_verification.py), handed to the connectors worker as ConnectorNotified (webhook_intake.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import PlainTextResponse
from ragstream_common.kafka.routing import RoutedEventSink

from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.audit_trail import mark_recorded
from ragstream_gateway.deps import GatewayServices, client_ip, services_of
from ragstream_gateway.problems import Problem, concealed, problem_responses
from ragstream_gateway.webhook_intake import (
    BodyReader,
    NotificationNotPublished,
    WebhookIntake,
    WebhookRefused,
    WebhookRequest,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
# Graph wants an answer within 3 s: the event gets this long to be acknowledged, whatever the upload timeout.
PUBLISH_BUDGET_S = 2.0
# Not constrained here: an id that cannot be a connector's is a 404 like an unknown one, not a 422.
ConnectorIdPath = Annotated[str, Path(description="The connector's id (`con_...`)")]
# The body is each provider's own (empty for Drive and Graph's handshake), verified as raw bytes.
_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}}

_DESCRIPTION = """No API key: each provider's own authentication is checked against the connector's secrets.

- `sharepoint`/`onedrive` (Microsoft Graph): `?validationToken=...` is answered 200 `text/plain` with the
  decoded token; change notifications need the subscription's `clientState` (403 otherwise); 202.
- `box`: `BOX-SIGNATURE-PRIMARY`/`-SECONDARY` over the body and `BOX-DELIVERY-TIMESTAMP` (401); 200.
- `gdrive`: `X-Goog-Channel-Token` must be the channel's (403); the `sync` message is acknowledged; 200.
- `webhook` (Standard Webhooks): `webhook-id`, `webhook-timestamp`, `webhook-signature` (401); the body must be
  `{"type": "document.upserted"|"document.deleted", "data": {"id", ...}}` (422); 202.

A delivery seen before is answered 200 and not processed again. 429 + Retry-After past the connector's
notification limit; 503 when the event could not be published (the provider retries)."""

_SUCCESS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Graph handshake (the token as text/plain), Drive sync, Box or Drive delivery, or a duplicate",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    202: {"description": "Accepted: handed to the connectors worker"},
}


def _intake(services: GatewayServices) -> WebhookIntake:
    deps, settings = services.deps, services.settings
    if deps.connectors is None:
        raise Problem(503, "connectors are not configured on this gateway", slug="connectors-unavailable")
    return WebhookIntake(
        deps.connectors,
        RoutedEventSink(deps.publisher, GATEWAY_ROUTES),
        deps.audit,
        deps.limiter,
        notifications_per_minute=settings.connector_notifications_per_minute,
        publish_timeout_s=min(settings.publish_timeout_s, PUBLISH_BUDGET_S),
    )


async def get_intake(request: Request) -> WebhookIntake:
    return _intake(services_of(request))


def body_reader(request: Request) -> BodyReader:
    """Read the body up to a limit: the declared length is checked first, then what actually arrives."""

    async def read(limit: int) -> bytes | None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    return read


@router.post(
    "/{connector_id}",
    summary="Receive a provider's webhook request for a connector",
    description=_DESCRIPTION,
    status_code=202,
    response_class=Response,
    responses={**_SUCCESS, **problem_responses(400, 401, 403, 404, 413, 422, 429, 503)},
    openapi_extra=_BODY,
)
async def receive_webhook(
    request: Request, connector_id: ConnectorIdPath, intake: Annotated[WebhookIntake, Depends(get_intake)]
) -> Response:
    webhook = WebhookRequest(
        connector_id=connector_id,
        query_string=request.url.query,
        headers={name.lower(): value for name, value in request.headers.items()},
        client_ip=client_ip(request),
        read_body=body_reader(request),
    )
    try:
        reply = await intake.receive(webhook)
    except WebhookRefused as refused:
        if refused.audit_done:
            mark_recorded()  # in the connector's tenant's log, by the intake
        headers = refused.headers
        if refused.status == 401:
            headers = {"WWW-Authenticate": 'Signature realm="ragstream-webhooks"', **headers}
        raise Problem(refused.status, refused.detail, slug=refused.slug, headers=headers) from None
    except NotificationNotPublished as failed:
        mark_recorded()
        raise concealed(
            request,
            503,
            f"{failed}; retry the delivery",
            slug="publish-failed",
            cause=failed.__cause__ or failed,
            headers={"Retry-After": "5"},
        ) from None
    mark_recorded()
    if reply.text is not None:
        return PlainTextResponse(reply.text, status_code=reply.status)
    return Response(status_code=reply.status)
