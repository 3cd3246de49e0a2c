"""The gateway's ports for connectors: the connector registry the API manages and the webhook path reads.

Secrets cross this port decrypted (`ConnectorRecord.secrets`, from `find` and `update_secrets` only) because the
webhook path needs them to verify signatures and a rotation keeps the previous one; they never leave the
gateway: no response, log line or audit entry carries them. `get` and `list` never decrypt them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Provider = Literal["sharepoint", "onedrive", "box", "gdrive", "webhook"]
ConnectorStatus = Literal["active", "removing", "removed"]
PROVIDERS: tuple[Provider, ...] = ("sharepoint", "onedrive", "box", "gdrive", "webhook")


@dataclass(frozen=True)
class ConnectorRecord:
    connector_id: str
    tenant_id: str
    provider: Provider
    name: str
    status: ConnectorStatus
    config: Mapping[str, Any]
    # Decrypted by `find` (for verifying webhook requests); empty from `get` and `list`.
    secrets: Mapping[str, str] = field(repr=False)
    created_at: datetime | None = None


@dataclass(frozen=True)
class ConnectorSyncStatus:
    """What GET /v1/connectors/{id} reports of a connector's sync (connector_sync_state)."""

    last_notification_at: datetime | None = None
    last_sync_at: datetime | None = None
    items_synced: int = 0
    error_count: int = 0
    last_error: str | None = None
    subscription_expires_at: datetime | None = None
    next_poll_at: datetime | None = None


@dataclass(frozen=True)
class NewConnector:
    connector_id: str
    tenant_id: str
    provider: Provider
    name: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False)


class ConnectorDirectory(Protocol):
    """connectors + connector_sync_state + connector_deliveries, secrets sealed with the tenant's data key."""

    async def create(self, connector: NewConnector) -> ConnectorRecord: ...

    async def find(self, connector_id: str) -> ConnectorRecord | None:
        """Any tenant's connector by id (the webhook path knows nothing else); secrets decrypted."""
        ...

    async def get(self, tenant_id: str, connector_id: str) -> tuple[ConnectorRecord, ConnectorSyncStatus] | None: ...

    async def list(self, tenant_id: str) -> Sequence[tuple[ConnectorRecord, ConnectorSyncStatus]]: ...

    async def set_status(
        self,
        tenant_id: str,
        connector_id: str,
        status: ConnectorStatus,
        *,
        expected: Collection[ConnectorStatus] | None = None,
    ) -> bool:
        """Set the status (only from one of `expected`, when given); False when no row changed."""
        ...

    async def replace_secrets(self, tenant_id: str, connector_id: str, secrets: Mapping[str, str]) -> None: ...

    async def update_secrets(
        self, tenant_id: str, connector_id: str, change: Callable[[Mapping[str, str]], Mapping[str, str]]
    ) -> bool:
        """Replace the secrets with `change(current secrets)`, the row locked meanwhile (two rotations at once
        cannot lose one); False when there is no such connector."""
        ...

    async def delivery_seen(self, tenant_id: str, connector_id: str, delivery_id: str) -> bool: ...

    async def record_delivery(self, tenant_id: str, connector_id: str, delivery_id: str) -> None:
        """Remember an accepted delivery (idempotent) and stamp the connector's last_notification_at."""
        ...
