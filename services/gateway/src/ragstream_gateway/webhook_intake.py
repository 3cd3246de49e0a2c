"""Webhook intake: a provider's request for a connector becomes one ConnectorNotified event, or a refusal.

Order, and why:
1. The connector is looked up by the id in the URL (404 for an unknown or removed one): the request names no
   tenant and carries no API key; the tenant is the connector's, never anything the request says.
2. A Graph `validationToken` handshake is answered at once with the token (nothing read, nothing published).
3. The body is read up to the provider's cap (413), then verified by the provider's scheme
   (webhook_verification.py: 400/401/403, and 422 for a verified generic webhook that is not a document event).
4. Only verified deliveries count against the connector's rate limit (429 + Retry-After): forged requests
   cannot use up a real provider's budget.
5. A delivery id already recorded is answered 200 and not published again (the provider stops retrying).
6. The event is published and acknowledged within a short timeout (Graph wants an answer within 3 s); a
   failure answers 503 so the provider retries. Only then is the delivery recorded.

Refusals (not throttling) and duplicates are audited in the connector's tenant's log with the reason, never a
secret or signature; a forged-request flood writes at most REJECTION_AUDIT_LIMIT rows per connector (the rest
is counted in metrics and logged), so the audit log does not amplify it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from prometheus_client import Counter
from rag.v1 import connectors_pb2
from ragstream_common.events import Emitted, EventSink
from ragstream_common.logs import get_logger
from ragstream_common.messages import now_timestamp

from ragstream_gateway.audit_trail import outcome_of
from ragstream_gateway.connector_ports import ConnectorRecord
from ragstream_gateway.ports import AuditEntry, AuditLog
from ragstream_gateway.ratelimit import RateDecision
from ragstream_gateway.webhook_verification import (
    BODY_LIMITS,
    GRAPH_PROVIDERS,
    VerificationFailed,
    VerifiedDelivery,
    graph_validation_token,
    verify_delivery,
)

log = get_logger(__name__)
Outcome = Literal["accepted", "rejected", "duplicate", "handshake", "throttled"]
NOTIFICATIONS = Counter(
    "ragstream_gateway_connector_notifications_total",
    "Provider webhook requests by connector provider and outcome",
    ["provider", "outcome"],
)
# Names in the limits store that no tenant id can take (tenant ids have no '/').
NOTIFICATION_LIMIT_PREFIX = "_connector/"
REJECTION_AUDIT_PREFIX = "_connector_rejections/"
REJECTION_AUDIT_LIMIT = "60/minute"
MAX_AUDITED_ID_CHARS = 128
CONNECTOR_ID = re.compile(r"^con_[a-z0-9]{8,32}$")
# What each provider expects to hear for an accepted delivery.
ACCEPTED_STATUS = {"sharepoint": 202, "onedrive": 202, "box": 200, "gdrive": 200, "webhook": 202}

BodyReader = Callable[[int], Awaitable[bytes | None]]


class DeliveryDirectory(Protocol):
    """What the webhook path needs of connector_ports.ConnectorDirectory (which satisfies it)."""

    async def find(self, connector_id: str) -> ConnectorRecord | None: ...

    async def delivery_seen(self, tenant_id: str, connector_id: str, delivery_id: str) -> bool: ...

    async def record_delivery(self, tenant_id: str, connector_id: str, delivery_id: str) -> None: ...


class NotificationLimiter(Protocol):
    """The rate-limit check of ratelimit.TenantRateLimiter: one hit of `identity` against `limit`."""

    async def check(self, tenant_id: str, limit: str | None = None) -> RateDecision: ...


@dataclass(frozen=True)
class WebhookRequest:
    connector_id: str
    query_string: str
    # Lower-case names.
    headers: Mapping[str, str]
    client_ip: str
    # Reads the whole body up to the given number of bytes; None when it is longer.
    read_body: BodyReader


@dataclass(frozen=True)
class WebhookReply:
    status: int
    outcome: Outcome
    # The Graph handshake's token, answered as text/plain.
    text: str | None = None


class WebhookRefused(Exception):
    """Answer `status` with a problem document. `audit_done`: the intake wrote the refusal's audit row, or
    deliberately none (throttling); False leaves the call to the audit trail (unknown connectors: no tenant)."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        audit_done: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail = status, slug, detail
        self.audit_done = audit_done
        self.headers = dict(headers or {})


class NotificationNotPublished(Exception):
    """Kafka did not acknowledge the event in time: answer 503 so the provider retries."""


class WebhookIntake:
    def __init__(
        self,
        directory: DeliveryDirectory,
        sink: EventSink,
        audit: AuditLog,
        limiter: NotificationLimiter,
        *,
        notifications_per_minute: int,
        publish_timeout_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._directory = directory
        self._sink = sink
        self._audit = audit
        self._limiter = limiter
        self._limit = f"{notifications_per_minute}/minute"
        self._publish_timeout_s = publish_timeout_s
        self._clock = clock

    async def receive(self, request: WebhookRequest) -> WebhookReply:
        connector = await self._connector(request)
        if connector.provider in GRAPH_PROVIDERS:
            handshake = await self._graph_handshake(connector, request)
            if handshake is not None:
                return handshake
        limit = BODY_LIMITS[connector.provider]
        body = await request.read_body(limit)
        if body is None:
            raise await self._refuse(connector, request, 413, "body_too_large", f"the body exceeds {limit} bytes")
        try:
            delivery = verify_delivery(connector.provider, body, request.headers, connector.secrets, self._clock())
        except VerificationFailed as failed:
            raise await self._refuse(connector, request, failed.status, failed.reason, failed.detail) from None
        if not delivery.publish:  # Drive's sync message: the channel works, nothing changed
            NOTIFICATIONS.labels(connector.provider, "handshake").inc()
            return WebhookReply(200, "handshake")
        await self._admit(connector, request)
        return await self._deliver(connector, request, delivery, body)

    async def _connector(self, request: WebhookRequest) -> ConnectorRecord:
        """The active connector the URL names; an id that cannot be one is not looked up."""
        connector_id = request.connector_id
        found = await self._directory.find(connector_id) if CONNECTOR_ID.match(connector_id) else None
        detail = f"no connector {connector_id[:64]!r}"
        if found is None:
            NOTIFICATIONS.labels("unknown", "rejected").inc()
            raise WebhookRefused(404, "connector-not-found", detail, audit_done=False)
        if found.status != "active":
            raise await self._refuse(found, request, 404, "connector_removed", detail)
        return found

    async def _graph_handshake(self, connector: ConnectorRecord, request: WebhookRequest) -> WebhookReply | None:
        """Graph's validation request: the decoded token back at once (Graph waits at most 10 s)."""
        try:
            token = graph_validation_token(request.query_string)
        except VerificationFailed as failed:
            raise await self._refuse(connector, request, failed.status, failed.reason, failed.detail) from None
        if token is None:
            return None
        NOTIFICATIONS.labels(connector.provider, "handshake").inc()
        return WebhookReply(200, "handshake", text=token)

    async def _admit(self, connector: ConnectorRecord, request: WebhookRequest) -> None:
        decision = await self._limiter.check(NOTIFICATION_LIMIT_PREFIX + connector.connector_id, self._limit)
        if decision.allowed:
            return
        retry = {"Retry-After": str(decision.retry_after_s)}
        if decision.unavailable:
            raise await self._refuse(
                connector, request, 503, "rate_limit_unavailable", "rate limits cannot be checked; retry", headers=retry
            )
        # Counted, neither audited nor logged one by one: a flood must not become a flood of rows or lines.
        NOTIFICATIONS.labels(connector.provider, "throttled").inc()
        raise WebhookRefused(
            429,
            "rate-limited",
            f"the connector's notification limit {self._limit} is exceeded; retry in {decision.retry_after_s} s",
            headers=retry,
        )

    async def _deliver(
        self, connector: ConnectorRecord, request: WebhookRequest, delivery: VerifiedDelivery, body: bytes
    ) -> WebhookReply:
        tenant_id, connector_id = connector.tenant_id, connector.connector_id
        details = {"provider": connector.provider, "delivery_id": delivery.delivery_id[:MAX_AUDITED_ID_CHARS]}
        if await self._directory.delivery_seen(tenant_id, connector_id, delivery.delivery_id):
            NOTIFICATIONS.labels(connector.provider, "duplicate").inc()
            await self._record(connector, request, "connector.notification.duplicate", details)
            return WebhookReply(200, "duplicate")
        try:
            await self._publish(connector, delivery, body)
        except NotificationNotPublished:
            NOTIFICATIONS.labels(connector.provider, "rejected").inc()
            await self._record(connector, request, "connector.notification.publish_failed", details, outcome="error")
            raise
        try:
            await self._directory.record_delivery(tenant_id, connector_id, delivery.delivery_id)
        except Exception as exc:  # published all the same: a redelivery is published again, the worker dedupes
            log.warning("could not record a delivery", connector_id=connector_id, error=repr(exc))
        NOTIFICATIONS.labels(connector.provider, "accepted").inc()
        await self._record(connector, request, "connector.notification.accepted", details)
        return WebhookReply(ACCEPTED_STATUS[connector.provider], "accepted")

    async def _publish(self, connector: ConnectorRecord, delivery: VerifiedDelivery, body: bytes) -> None:
        event = connectors_pb2.ConnectorNotified(
            tenant_id=connector.tenant_id,
            connector_id=connector.connector_id,
            provider=connector.provider,
            kind=connectors_pb2.ConnectorNotified.NOTIFICATION,
            delivery_id=delivery.delivery_id,
            payload=body,
            attributes=dict(delivery.attributes),
            received_at=now_timestamp(),
        )
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                await self._sink.emit([Emitted(event)])
        except Exception as exc:
            log.error("connector notification not published", connector_id=connector.connector_id, error=repr(exc))
            raise NotificationNotPublished("the notification could not be handed to the pipeline") from exc

    async def _refuse(
        self,
        connector: ConnectorRecord,
        request: WebhookRequest,
        status: int,
        reason: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> WebhookRefused:
        """Count and audit a refusal; the caller raises what this returns."""
        NOTIFICATIONS.labels(connector.provider, "rejected").inc()
        log.warning(
            "connector notification refused",
            tenant_id=connector.tenant_id,
            connector_id=connector.connector_id,
            provider=connector.provider,
            reason=reason,
            client_ip=request.client_ip,
        )
        budget = await self._limiter.check(REJECTION_AUDIT_PREFIX + connector.connector_id, REJECTION_AUDIT_LIMIT)
        if budget.allowed or budget.unavailable:
            details = {"provider": connector.provider, "reason": reason, "status": status}
            await self._record(
                connector, request, "connector.notification.rejected", details, outcome=outcome_of(status)
            )
        slug = _SLUGS.get(status, "webhook-refused")
        return WebhookRefused(status, slug, detail, headers=headers)

    async def _record(
        self,
        connector: ConnectorRecord,
        request: WebhookRequest,
        action: str,
        details: Mapping[str, Any],
        *,
        outcome: str = "success",
    ) -> None:
        entry = AuditEntry(
            connector.tenant_id,
            f"provider:{connector.provider}",
            action,
            connector.connector_id,
            request.client_ip,
            details,
            outcome=outcome,
        )
        try:
            await self._audit.record(entry)
        except Exception as exc:  # best effort: a lost row must not change the provider's answer
            log.error("audit write failed", action=action, connector_id=connector.connector_id, error=repr(exc))


_SLUGS = {
    400: "webhook-malformed",
    401: "webhook-unauthorized",
    403: "webhook-forbidden",
    404: "connector-not-found",
    413: "webhook-body-too-large",
    422: "webhook-invalid-event",
    503: "rate-limit-unavailable",
}
