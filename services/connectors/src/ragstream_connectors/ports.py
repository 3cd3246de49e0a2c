"""What the connectors worker's handlers, sync engine and scheduler need of the outside world; nothing concrete.

The Postgres adapter (adapters/state_pg.py) implements `ConnectorStore` and `ScheduleStore`; the common blob store
implements `BlobFiles`; `TenantSecretSealer` (ragstream_common.secret_envelope) implements `SecretUnsealer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from ragstream_connectors.providers.base import ConnectorContext, Provider, Subscription

ConnectorStatus = Literal["active", "removing", "removed"]


@dataclass(frozen=True)
class ConnectorRecord:
    """A `connectors` row; the secrets stay sealed until the worker needs the provider."""

    connector_id: str
    tenant_id: str
    provider: str
    name: str
    status: ConnectorStatus
    config: Mapping[str, Any]
    secrets_ciphertext: bytes = field(repr=False)


@dataclass(frozen=True)
class SyncState:
    """A `connector_sync_state` row: where the last sync stopped and the subscription that feeds it."""

    cursor: str | None = None
    subscription: Subscription | None = None
    # Set while a full enumeration runs: live items not seen since then are deleted at its final page.
    full_sync_started_at: datetime | None = None
    last_sync_at: datetime | None = None
    items_synced: int = 0
    error_count: int = 0
    last_error: str | None = None
    next_poll_at: datetime | None = None


@dataclass(frozen=True)
class ItemRecord:
    """A `connector_items` row: the document an item became and the last version published for it."""

    item_id: str
    document_id: str
    version: int
    version_tag: str = ""
    content_sha256: str = ""
    title: str = ""
    deleted: bool = False
    # Written before its event was acknowledged, not yet confirmed after: the event may or may not be out.
    pending: bool = False


@dataclass(frozen=True)
class PageWrite:
    """What one applied page changes in Postgres, written in one transaction after its events were published."""

    # Rows whose version, tag, hash, title or deleted flag changed (seen_at moves too).
    items: Sequence[ItemRecord] = ()
    # Items listed but unchanged (or skipped): only seen_at moves, so a full enumeration does not delete them.
    seen: Sequence[str] = ()
    # Where the next sync resumes; None leaves the saved cursor as it is (items named by a notification).
    cursor: str | None = None
    # How many changes the page listed (connector_sync_state.items_synced grows by it).
    listed: int = 0
    # An item that could not be taken (too large, unreadable): shown as the connector's last error.
    error: str | None = None
    # Deliveries whose items this page applied: marked processed with the rows, so a replay is recognised.
    deliveries: Sequence[str] = ()


@dataclass(frozen=True)
class DueConnector:
    """A row of `ragstream_due_connectors`: its poll is due or its subscription expires soon."""

    tenant_id: str
    connector_id: str
    provider: str
    next_poll_at: datetime
    subscription_expires_at: datetime | None


class ConnectorStore(Protocol):
    """connectors, connector_sync_state, connector_items and connector_deliveries, one tenant at a time."""

    async def find(self, tenant_id: str, connector_id: str) -> ConnectorRecord | None: ...

    async def mark_removed(self, tenant_id: str, connector_id: str) -> None: ...

    async def sync_state(self, tenant_id: str, connector_id: str) -> SyncState: ...

    async def start_full_sync(self, tenant_id: str, connector_id: str) -> datetime:
        """Forget the cursor and stamp `full_sync_started_at` (returned): an enumeration starts."""
        ...

    async def items(self, tenant_id: str, connector_id: str, item_ids: Sequence[str]) -> dict[str, ItemRecord]: ...

    async def save_page(self, tenant_id: str, connector_id: str, page: PageWrite) -> None: ...

    async def unseen_live_items(self, tenant_id: str, connector_id: str, limit: int) -> list[ItemRecord]:
        """Live items not seen since the running full enumeration started (none when none runs)."""
        ...

    async def live_items(self, tenant_id: str, connector_id: str, limit: int) -> list[ItemRecord]: ...

    async def finish_sync(self, tenant_id: str, connector_id: str, poll_interval_s: float) -> None:
        """The final page is in: the next poll is due a poll interval from now; a full enumeration is over."""
        ...

    async def record_error(self, tenant_id: str, connector_id: str, message: str) -> None: ...

    async def poll_soon(self, tenant_id: str, connector_id: str, delay_s: float) -> None:
        """Bring the next poll forward to `delay_s` from now (never later than it already is)."""
        ...

    async def save_subscription(self, tenant_id: str, connector_id: str, subscription: Subscription | None) -> None: ...

    async def processed_deliveries(
        self, tenant_id: str, connector_id: str, delivery_ids: Sequence[str]
    ) -> set[str]: ...

    async def mark_processed(self, tenant_id: str, connector_id: str, delivery_ids: Sequence[str]) -> None: ...


class ScheduleStore(Protocol):
    """What the scheduler needs: due connectors across tenants, and a claim only one replica wins."""

    async def due_connectors(self, renew_within_s: float, limit: int) -> list[DueConnector]: ...

    async def claim(self, due: DueConnector, poll_interval_s: float, keep_deliveries_s: float) -> bool:
        """Move the connector's next poll on, if no other replica did since `due` was read; prune its old
        deliveries. True when this replica won it."""
        ...


class BlobFiles(Protocol):
    """The blob store, fed from a file so that a large download is never held in memory."""

    async def put_file(
        self, tenant_id: str, key: str, path: Path, content_type: str, *, sha256: str | None = None
    ) -> str:
        """Store (idempotently on `key`) and return the `blob://` URI for events."""
        ...


class SecretUnsealer(Protocol):
    async def unseal(self, tenant_id: str, purpose: str, ciphertext: bytes) -> dict[str, str]: ...


ProviderFactory = Callable[[ConnectorContext], Provider]
