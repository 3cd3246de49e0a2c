"""The connector registry's operations behind the API: create, list, status, remove, resync, rotate a secret.

The gateway only keeps the registry and hands work to the connectors worker (ConnectorNotified on
rag.connectors.notified.v1); provider calls, unsubscribing and purging happen there. Order of each write, and why:
- create: the connector row and its sync state (next poll due now) commit together, then RESYNC is published.
  A failed publish is logged, not an error: the worker's scheduler finds the due connector by itself.
- remove: the status moves to `removing` first, then REMOVE is published; if Kafka does not take it the status
  goes back (only from `removing`, so a worker that already finished is not undone) and the caller gets 503.
  Asking again while `removing` publishes REMOVE again: the worker's removal is idempotent.
- resync: RESYNC is published and must be acknowledged (503 otherwise); nothing is stored.
- rotate (webhook connectors): the new signing secret replaces the old, which stays valid for a grace period.

Generated secrets (Graph clientState, Drive channel token, Standard Webhooks signing secret) are made here, sealed
with the caller's by the directory, and only the webhook signing secret is ever shown, once.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rag.v1 import connectors_pb2
from ragstream_common.events import Emitted, EventSink
from ragstream_common.logs import get_logger
from ragstream_common.messages import now_timestamp

from ragstream_gateway.connector_ports import (
    ConnectorDirectory,
    ConnectorRecord,
    ConnectorStatus,
    ConnectorSyncStatus,
    NewConnector,
    Provider,
)
from ragstream_gateway.documents import Caller
from ragstream_gateway.ports import AuditEntry, AuditLog

log = get_logger(__name__)
RESYNC = connectors_pb2.ConnectorNotified.RESYNC
REMOVE = connectors_pb2.ConnectorNotified.REMOVE

# How long the previous Standard Webhooks secret is still accepted after a rotation.
PREVIOUS_SECRET_GRACE = timedelta(hours=24)
SIGNING_SECRET = "signing_secret"
PREVIOUS_SIGNING_SECRET = "previous_signing_secret"
PREVIOUS_SIGNING_SECRET_EXPIRES_AT = "previous_signing_secret_expires_at"
ENDED: frozenset[ConnectorStatus] = frozenset({"removing", "removed"})
ONLY_ACTIVE: tuple[ConnectorStatus, ...] = ("active",)
ONLY_REMOVING: tuple[ConnectorStatus, ...] = ("removing",)


class ConnectorNotFound(Exception):
    pass


class ConnectorConflict(Exception):
    """The operation does not apply to the connector as it is (its type or status); the message says why."""


class NotPublished(Exception):
    """Kafka did not acknowledge the connector's work item; nothing changed, the caller may retry."""


@dataclass(frozen=True)
class ConnectorSpec:
    """A validated creation request."""

    provider: Provider
    name: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class CreatedConnector:
    record: ConnectorRecord
    # The webhook connector's signing secret: returned once, by the creation.
    signing_secret: str | None = field(default=None, repr=False)


def webhook_url(public_base_url: str, connector_id: str) -> str:
    """Where providers deliver a connector's notifications (routes/webhooks.py)."""
    return f"{public_base_url.rstrip('/')}/v1/webhooks/{connector_id}"


def new_connector_id() -> str:
    return "con_" + secrets.token_hex(8)


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def generated_secrets(provider: Provider) -> dict[str, str]:
    """The secrets the platform makes for a new connector, beside those the caller sent."""
    if provider in ("sharepoint", "onedrive"):
        return {"client_state": secrets.token_urlsafe(32)}  # Graph echoes it in every notification (max 128)
    if provider == "gdrive":
        return {"channel_token": secrets.token_urlsafe(32)}  # X-Goog-Channel-Token of every message
    if provider == "webhook":
        return {SIGNING_SECRET: new_signing_secret()}
    return {}


def rotated_secrets(current: Mapping[str, str], new_secret: str, now: datetime) -> dict[str, str]:
    """`current` with `new_secret` signing and the one it replaces kept for PREVIOUS_SECRET_GRACE."""
    rotated = {**current, SIGNING_SECRET: new_secret}
    if previous := current.get(SIGNING_SECRET):
        rotated[PREVIOUS_SIGNING_SECRET] = previous
        rotated[PREVIOUS_SIGNING_SECRET_EXPIRES_AT] = (now + PREVIOUS_SECRET_GRACE).isoformat()
    return rotated


class ConnectorService:
    def __init__(
        self,
        directory: ConnectorDirectory,
        sink: EventSink,
        audit: AuditLog,
        *,
        publish_timeout_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._directory = directory
        self._sink = sink
        self._audit = audit
        self._publish_timeout_s = publish_timeout_s
        self._clock = clock

    async def create(self, tenant_id: str, spec: ConnectorSpec, caller: Caller) -> CreatedConnector:
        made = generated_secrets(spec.provider)
        connector = NewConnector(
            new_connector_id(), tenant_id, spec.provider, spec.name, dict(spec.config), {**spec.secrets, **made}
        )
        record = await self._directory.create(connector)
        try:
            await self._publish(record, RESYNC)
        except NotPublished:  # the scheduler picks the connector up: its first poll is due now
            log.warning("first sync not published; the scheduler will start it", connector_id=record.connector_id)
        details = {"provider": record.provider, "name": record.name, "config": dict(record.config)}
        await self._record(tenant_id, caller, "connector.create", record.connector_id, details)
        return CreatedConnector(record, made.get(SIGNING_SECRET))

    async def list(
        self, tenant_id: str, *, include_removed: bool = False
    ) -> Sequence[tuple[ConnectorRecord, ConnectorSyncStatus]]:
        found = await self._directory.list(tenant_id)
        return [entry for entry in found if include_removed or entry[0].status != "removed"]

    async def status(self, tenant_id: str, connector_id: str) -> tuple[ConnectorRecord, ConnectorSyncStatus]:
        found = await self._directory.get(tenant_id, connector_id)
        if found is None:
            raise ConnectorNotFound(connector_id)
        return found

    async def remove(self, tenant_id: str, connector_id: str, *, purge: bool, caller: Caller) -> ConnectorStatus:
        """Hand the removal to the worker; the status the connector has now (`removing`, or `removed`)."""
        record, _ = await self.status(tenant_id, connector_id)
        if record.status == "removed" and not purge:
            return "removed"  # nothing left to do: DELETE is idempotent
        moved = record.status == "active" and await self._directory.set_status(
            tenant_id, connector_id, "removing", expected=ONLY_ACTIVE
        )
        try:
            await self._publish(record, REMOVE, purge=purge)
        except NotPublished:
            if moved:
                await self._directory.set_status(tenant_id, connector_id, "active", expected=ONLY_REMOVING)
            raise
        await self._record(tenant_id, caller, "connector.remove", connector_id, {"purge": purge})
        return "removed" if record.status == "removed" else "removing"

    async def resync(self, tenant_id: str, connector_id: str, caller: Caller) -> ConnectorRecord:
        record, _ = await self.status(tenant_id, connector_id)
        if record.status in ENDED:
            raise ConnectorConflict(f"connector {connector_id!r} is {record.status}")
        await self._publish(record, RESYNC)
        await self._record(tenant_id, caller, "connector.resync", connector_id, {})
        return record

    async def rotate_secret(self, tenant_id: str, connector_id: str, caller: Caller) -> tuple[str, datetime]:
        """A new signing secret for a webhook connector, and until when the previous one stays valid."""
        record, _ = await self.status(tenant_id, connector_id)
        if record.provider != "webhook":
            raise ConnectorConflict(f"only webhook connectors have a signing secret; this one is {record.provider}")
        if record.status in ENDED:
            raise ConnectorConflict(f"connector {connector_id!r} is {record.status}")
        new_secret, now = new_signing_secret(), self._clock()
        if not await self._directory.update_secrets(
            tenant_id, connector_id, lambda current: rotated_secrets(current, new_secret, now)
        ):
            raise ConnectorNotFound(connector_id)
        expires_at = now + PREVIOUS_SECRET_GRACE
        details = {"previous_secret_expires_at": expires_at.isoformat()}
        await self._record(tenant_id, caller, "connector.rotate_secret", connector_id, details)
        return new_secret, expires_at

    async def _publish(
        self, record: ConnectorRecord, kind: connectors_pb2.ConnectorNotified.Kind.ValueType, *, purge: bool = False
    ) -> None:
        event = connectors_pb2.ConnectorNotified(
            tenant_id=record.tenant_id,
            connector_id=record.connector_id,
            provider=record.provider,
            kind=kind,
            received_at=now_timestamp(),
            purge=purge,
        )
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                await self._sink.emit([Emitted(event)])
        except Exception as exc:
            kind_name = connectors_pb2.ConnectorNotified.Kind.Name(kind)
            log.error("publish failed", connector_id=record.connector_id, kind=kind_name, error=repr(exc))
            raise NotPublished(f"the connector's {kind_name} could not be published") from exc

    async def _record(
        self, tenant_id: str, caller: Caller, action: str, connector_id: str, details: Mapping[str, Any]
    ) -> None:
        entry = AuditEntry(
            tenant_id, caller.actor, action, connector_id, caller.client_ip, {**caller.details, **details}
        )
        try:
            await self._audit.record(entry)
        except Exception as exc:  # the change is made; a lost audit row must not turn it into an error
            log.error("audit write failed", action=action, resource=connector_id, error=repr(exc))
